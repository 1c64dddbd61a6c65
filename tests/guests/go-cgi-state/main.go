// go-cgi-state shows what each CGI run of a Go app starts from, for tests/it/http.rs: wasmdyno runs its
// initialization once per dyno and starts every request from there, so package state set by init is there,
// what a request changes is not, and each request still has its own environment and random numbers.
package main

import (
	"fmt"
	"log"
	"math/rand"
	"net/http"
	"net/http/cgi"
	"os"
)

var (
	inits      int
	served     int
	atInit     = os.Getenv("GREETING")
	seenAtInit = map[string]int{"a": 1, "b": 2, "c": 3}
)

func init() {
	inits++
	fmt.Fprintln(os.Stderr, "go-cgi-state: init ran")
}

func main() {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "inits=%d served=%d map=%d\n", inits, served, len(seenAtInit))
		fmt.Fprintf(w, "greeting=%s at-init=%s\n", os.Getenv("GREETING"), atInit)
		fmt.Fprintf(w, "query=%s args=%d\n", r.URL.RawQuery, len(os.Args))
		fmt.Fprintf(w, "random=%d\n", rand.Int63())
	})
	if err := cgi.Serve(handler); err != nil {
		log.Fatal(err)
	}
}
