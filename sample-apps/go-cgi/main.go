// go-cgi is a net/http app served as CGI: wasmdyno runs it once per request (`web: cgi go-cgi.wasm`, which the Go
// buildpack writes for apps importing net/http/cgi), with the request in its environment and on stdin.
// Go's standard net/http/cgi works unchanged.
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"os"
)

func main() {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Content-Type", "application/octet-stream")
			io.Copy(w, r.Body)
		case "/missing":
			http.NotFound(w, r)
		case "/moved":
			http.Redirect(w, r, "/", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "Hello from Go CGI on wasmdyno (%s)\n%s %s?%s\n", os.Getenv("DYNO"), r.Method, r.URL.Path, r.URL.RawQuery)
			fmt.Fprintf(w, "X-Forwarded-For: %s\n", r.Header.Get("X-Forwarded-For"))
		}
		log.Printf("served %s %s", r.Method, r.URL.Path)
	})
	if err := cgi.Serve(handler); err != nil {
		log.Fatal(err)
	}
}
