//go:build wasip1

// Added to a CGI app's package main by wasmdyno's Go buildpack, through `go build -overlay` (the app's own files
// are not touched), and built with -buildmode=c-shared: the module's `_initialize` starts the Go runtime and runs
// every package's init, and `wasmdyno_start` runs main. wasmdyno runs `_initialize` once per dyno and starts each
// request from the state it left, so each run first takes what is its own: the request's environment and
// arguments, and fresh seeds for the runtime's random numbers (math/rand, map seeds).
package main

import (
	"os"
	"strings"
	"unsafe"
)

//go:wasmimport wasi_snapshot_preview1 environ_sizes_get
func wasmdynoEnvironSizesGet(count, size *uint32) uint32

//go:wasmimport wasi_snapshot_preview1 environ_get
func wasmdynoEnvironGet(ptrs *uint32, buf *byte) uint32

//go:wasmimport wasi_snapshot_preview1 args_sizes_get
func wasmdynoArgsSizesGet(count, size *uint32) uint32

//go:wasmimport wasi_snapshot_preview1 args_get
func wasmdynoArgsGet(ptrs *uint32, buf *byte) uint32

// Provided by the runtime file the same overlay adds (zz_wasmdyno_reseed.go).
//
//go:linkname wasmdynoReseed runtime.wasmdynoReseed
func wasmdynoReseed()

// wasmdynoStrings reads a WASI list of strings (the environment or the arguments).
func wasmdynoStrings(sizes func(*uint32, *uint32) uint32, get func(*uint32, *byte) uint32) ([]string, bool) {
	var count, size uint32
	if sizes(&count, &size) != 0 {
		return nil, false
	}
	ptrs := make([]uint32, count+1)
	buf := make([]byte, size+1)
	if get(&ptrs[0], &buf[0]) != 0 {
		return nil, false
	}
	base := uint32(uintptr(unsafe.Pointer(&buf[0])))
	out := make([]string, 0, count)
	for _, ptr := range ptrs[:count] {
		rest := buf[ptr-base:]
		end := 0
		for end < len(rest) && rest[end] != 0 {
			end++
		}
		out = append(out, string(rest[:end]))
	}
	return out, true
}

//go:wasmexport wasmdyno_start
func wasmdynoStart() {
	wasmdynoReseed()
	if env, ok := wasmdynoStrings(wasmdynoEnvironSizesGet, wasmdynoEnvironGet); ok {
		os.Clearenv()
		for _, kv := range env {
			if k, v, ok := strings.Cut(kv, "="); ok {
				os.Setenv(k, v)
			}
		}
	}
	if args, ok := wasmdynoStrings(wasmdynoArgsSizesGet, wasmdynoArgsGet); ok {
		os.Args = args
	}
	main()
}
