//go:build !linux

package main

import "os"

// isTerminal reports whether f is a character device: off Linux, the
// closest check without a terminal library (it takes /dev/null for one).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
