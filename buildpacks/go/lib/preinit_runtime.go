//go:build wasip1

// Added to the Go runtime of a CGI app by wasmdyno's Go buildpack (through `go build -overlay`; see
// preinit_main.go). The runtime draws its random seeds once, while it starts; a module started once and run many
// times from that state would give every run the same math/rand numbers. wasmdynoReseed draws them again, as the
// runtime's own start does, for the per-m state that math/rand, math/rand/v2 and new maps take their seeds from.
// (The hash keys of maps made before it keep theirs: those maps depend on them.)
package runtime

import _ "unsafe"

//go:linkname wasmdynoReseed
func wasmdynoReseed() {
	lock(&globalRand.lock)
	var seed [32]byte
	if readRandom(seed[:]) == len(seed) {
		globalRand.state.Init(seed)
	}
	clear(seed[:])
	unlock(&globalRand.lock)
	mrandinit(getg().m)
}
