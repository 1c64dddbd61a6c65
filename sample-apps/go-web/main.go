// go-web is a net/http web app for a wasmdyno web dyno.
//
// Go on wasip1 cannot net.Listen; wasmdyno hands a web dyno its listening socket as a file descriptor instead
// (WASMDYNO_LISTEN_FD, normally 4), which net.FileListener turns into an ordinary net.Listener.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

func main() {
	fd, err := strconv.Atoi(os.Getenv("WASMDYNO_LISTEN_FD"))
	if err != nil {
		log.Fatal("WASMDYNO_LISTEN_FD is not set: run me as a wasmdyno web dyno")
	}
	listener, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	if err != nil {
		log.Fatalf("listener on fd %d: %v", fd, err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "Hello from Go on wasmdyno (%s)\n%s %s\n", os.Getenv("DYNO"), r.Method, r.URL.Path)
	})
	log.Printf("listening on fd %d", fd)
	log.Fatal(http.Serve(listener, nil))
}
