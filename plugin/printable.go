package plugin

import (
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// printable passes text to a terminal with every control character but
// newline and tab escaped (ESC as \x1b, C1 such as CSI as \u009b) and
// every byte that is not UTF-8 as \xNN. What the plugin prints comes from
// clusters' check-ins, and a cell holding "ESC]52;c;…" would otherwise
// move the cursor, retitle the window or write the clipboard of whoever
// ran `kubectl trainyard fleet`. The bridge and the webhook refuse such
// values; this is the second wall, for what was stored before. JSON stays
// valid (it escapes C0 itself, and \u009b is a JSON escape of the same
// character).
type printable struct {
	w     io.Writer
	carry []byte // the start of a rune split across writes
}

func newPrintable(w io.Writer) *printable { return &printable{w: w} }

func (p *printable) Write(b []byte) (int, error) {
	n := len(b)
	if len(p.carry) > 0 {
		b = append(p.carry, b...)
		p.carry = nil
	}
	out := make([]byte, 0, len(b)+16)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			if !utf8.FullRune(b[i:]) {
				p.carry = append([]byte(nil), b[i:]...)
				i = len(b)
				continue
			}
			out = fmt.Appendf(out, `\x%02x`, b[i])
		case r == '\n' || r == '\t':
			out = append(out, byte(r))
		case r < 0x80 && unicode.IsControl(r):
			out = fmt.Appendf(out, `\x%02x`, r)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r):
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, b[i:i+size]...)
		}
		i += size
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

// flush writes a rune left incomplete at the end, escaped.
func (p *printable) flush() {
	for _, c := range p.carry {
		_, _ = fmt.Fprintf(p.w, `\x%02x`, c)
	}
	p.carry = nil
}
