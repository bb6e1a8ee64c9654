package plugin

import "io"

// ContinueOf is continueOf, for the tests.
var ContinueOf = continueOf

// NewPrintable exposes the terminal wall to the unit test.
func NewPrintable(w io.Writer) (io.Writer, func()) {
	p := newPrintable(w)
	return p, p.flush
}
