package plugin

import "io"

// MetadataOf is metadataOf, for the tests.
var MetadataOf = metadataOf

// NewPrintable exposes the terminal wall to the unit test.
func NewPrintable(w io.Writer) (io.Writer, func()) {
	p := newPrintable(w)
	return p, p.flush
}
