// Package greet is a tiny vendored module: Go apps on wasmdyno use the standard library and vendor/.
package greet

import "fmt"

// Hello returns a greeting for name.
func Hello(name string) string {
	return fmt.Sprintf("Hello, %s!", name)
}
