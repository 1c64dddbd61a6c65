// go-hello is a one-off command: `go-hello [NAME] [EXIT_CODE]`.
// It greets NAME (or $NAME), echoes stdin when NAME is "-", and exits with EXIT_CODE.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"example.com/greet"
)

func main() {
	name := os.Getenv("NAME")
	if name == "" {
		name = "world"
	}
	if len(os.Args) > 1 && os.Args[1] != "-" {
		name = os.Args[1]
	}
	fmt.Println(greet.Hello(name), "Greetings from", os.Getenv("DYNO")+", Go compiled to WebAssembly.")
	if len(os.Args) > 1 && os.Args[1] == "-" {
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, "reading stdin:", err)
			os.Exit(1)
		}
	}
	if len(os.Args) > 2 {
		code, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "EXIT_CODE must be a number")
			os.Exit(2)
		}
		os.Exit(code)
	}
}
