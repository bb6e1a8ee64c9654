package bridge

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// scanner checks one JSON value as its bytes arrive, without holding it:
// its memory is a small read buffer and a frame per open array or object
// (at most maxDepth), whatever the body holds. It enforces a route's
// limits as it goes, so a body is refused at the first member too many,
// and tells visit the scalars (and container openings) it passes, with
// the keys and indexes that lead to them. encoding/json's Decoder would
// hold a whole string token, or a whole value, in memory first.
type scanner struct {
	r     *bufio.Reader
	lim   limits
	stack []frame
	visit func(path []frame, tok token)
}

// frame is one open array or object.
type frame struct {
	object bool
	n      int    // members so far
	key    string // an object's current key (its first maxKept bytes)
}

// token is what visit sees of a value: its kind, and a string's text (its
// first maxKept bytes).
type token struct {
	kind byte // '{', '[', '"', 'n' (null), 't' (true/false), '0' (number)
	text string
}

// maxKept is how much of a string the scanner keeps: enough for a key or
// an identifier, never a whole value.
const maxKept = 256

func newScanner(r io.Reader, lim limits) *scanner {
	return &scanner{r: bufio.NewReaderSize(r, 4096), lim: lim}
}

// path names where the scanner is, as field paths do: data[3].version.
func (s *scanner) path() string {
	var b strings.Builder
	for _, f := range s.stack {
		switch {
		case f.object && f.key != "":
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		case !f.object:
			b.WriteString("[" + strconv.Itoa(max(f.n-1, 0)) + "]")
		}
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
}

// scan checks exactly one JSON value, then requires the end of the input.
func (s *scanner) scan() error {
	c, err := s.next()
	if err == io.EOF {
		return errBadJSON{errors.New("the body is empty")}
	} else if err != nil {
		return s.readErr(err)
	}
	if err := s.value(c); err != nil {
		return err
	}
	c, err = s.next()
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		return s.readErr(err)
	case c == '{' || c == '[' || c == '"' || c == '-' || c == 't' || c == 'f' || c == 'n' || (c >= '0' && c <= '9'):
		return errTrailing{"more than one JSON value"}
	}
	return errTrailing{"trailing data after the JSON value"}
}

// next is the next byte that is not white space.
func (s *scanner) next() (byte, error) {
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return 0, err
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c, nil
		}
	}
}

// need is next for a byte that must come: EOF is a syntax error.
func (s *scanner) need() (byte, error) {
	c, err := s.next()
	if err != nil {
		return 0, s.readErr(err)
	}
	return c, nil
}

func syntaxErr(c byte, where string) error {
	return errBadJSON{fmt.Errorf("invalid character %q %s", c, where)}
}

// value scans the value that starts with c.
func (s *scanner) value(c byte) error {
	switch {
	case c == '{' || c == '[':
		return s.container(c)
	case c == '"':
		text, err := s.str()
		if err != nil {
			return err
		}
		s.see(token{kind: '"', text: text})
		return nil
	case c == 't':
		return s.literal("rue", token{kind: 't'})
	case c == 'f':
		return s.literal("alse", token{kind: 't'})
	case c == 'n':
		return s.literal("ull", token{kind: 'n'})
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number(c)
	}
	return syntaxErr(c, "looking for beginning of value")
}

func (s *scanner) see(t token) {
	if s.visit != nil {
		s.visit(s.stack, t)
	}
}

// container scans an object or array whose opening c was read.
func (s *scanner) container(c byte) error {
	if len(s.stack) >= maxDepth {
		return errTooDeep{max: maxDepth}
	}
	s.see(token{kind: c})
	s.stack = append(s.stack, frame{object: c == '{'})
	top := len(s.stack) - 1
	closing := byte(']')
	if c == '{' {
		closing = '}'
	}
	c, err := s.need()
	if err != nil {
		return err
	}
	if c == closing {
		s.stack = s.stack[:top]
		return nil
	}
	for {
		f := &s.stack[top]
		f.n++
		if s.lim.items > 0 && f.n > s.lim.items {
			s.stack = s.stack[:top]
			return errTooManyItems{path: s.path(), max: s.lim.items, why: s.lim.why}
		}
		if f.object {
			if c != '"' {
				return syntaxErr(c, "looking for beginning of object key string")
			}
			key, err := s.str()
			if err != nil {
				return err
			}
			f.key = key
			if c, err = s.need(); err != nil {
				return err
			}
			if c != ':' {
				return syntaxErr(c, "after object key")
			}
			if c, err = s.need(); err != nil {
				return err
			}
		}
		if err := s.value(c); err != nil {
			return err
		}
		if c, err = s.need(); err != nil {
			return err
		}
		switch c {
		case ',':
			if c, err = s.need(); err != nil {
				return err
			}
		case closing:
			s.stack = s.stack[:top]
			return nil
		default:
			return syntaxErr(c, "after "+map[bool]string{true: "object key:value pair", false: "array element"}[f.object])
		}
	}
}

// str scans a string whose opening quote was read, keeping its first
// maxKept bytes (escapes decoded).
func (s *scanner) str() (string, error) {
	var kept []byte
	keep := func(b ...byte) {
		if len(kept) < maxKept {
			kept = append(kept, b[:min(len(b), maxKept-len(kept))]...)
		}
	}
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return "", s.readErr(err)
		}
		switch {
		case c == '"':
			return string(kept), nil
		case c < 0x20:
			return "", syntaxErr(c, "in string literal")
		case c != '\\':
			keep(c)
			continue
		}
		e, err := s.r.ReadByte()
		if err != nil {
			return "", s.readErr(err)
		}
		switch e {
		case '"', '\\', '/':
			keep(e)
		case 'b':
			keep('\b')
		case 'f':
			keep('\f')
		case 'n':
			keep('\n')
		case 'r':
			keep('\r')
		case 't':
			keep('\t')
		case 'u':
			var hex [4]byte
			if _, err := io.ReadFull(s.r, hex[:]); err != nil {
				return "", s.readErr(err)
			}
			v, err := strconv.ParseUint(string(hex[:]), 16, 16)
			if err != nil {
				return "", errBadJSON{fmt.Errorf("invalid escape \\u%s in string literal", hex[:])}
			}
			keep(utf8.AppendRune(nil, rune(v))...)
		default:
			return "", syntaxErr(e, "in string escape code")
		}
	}
}

func (s *scanner) literal(rest string, t token) error {
	for i := range len(rest) {
		c, err := s.r.ReadByte()
		if err != nil {
			return s.readErr(err)
		}
		if c != rest[i] {
			return syntaxErr(c, "in literal")
		}
	}
	s.see(t)
	return nil
}

// number scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? whose first
// byte c was read.
func (s *scanner) number(c byte) error {
	var err error
	read := func() bool {
		c, err = s.r.ReadByte()
		return err == nil
	}
	digits := func(atLeastOne bool) error {
		n := 0
		for read() && c >= '0' && c <= '9' {
			n++
		}
		if err != nil && err != io.EOF {
			return s.readErr(err)
		}
		if atLeastOne && n == 0 {
			if err == io.EOF {
				return errBadJSON{io.ErrUnexpectedEOF}
			}
			return syntaxErr(c, "in numeric literal")
		}
		return nil
	}
	if c == '-' {
		if !read() {
			return s.readErr(err)
		}
		if c < '0' || c > '9' {
			return syntaxErr(c, "in numeric literal")
		}
	}
	if c != '0' {
		if e := digits(false); e != nil {
			return e
		}
	} else if !read() && err != io.EOF {
		return s.readErr(err)
	}
	if err == nil && c == '.' {
		if e := digits(true); e != nil {
			return e
		}
	}
	if err == nil && (c == 'e' || c == 'E') {
		if !read() {
			return s.readErr(err)
		}
		if c != '+' && c != '-' {
			_ = s.r.UnreadByte()
		}
		if e := digits(true); e != nil {
			return e
		}
	}
	if err == nil {
		_ = s.r.UnreadByte() // the byte after the number is the caller's
	}
	s.see(token{kind: '0'})
	return nil
}

// readErr passes the body reader's own errors (too large, too slow, a
// dump that compresses too large) on, and calls an early end bad JSON.
func (s *scanner) readErr(err error) error {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return errBodyLarge{limit: tooLarge.Limit}
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		return errBadJSON{io.ErrUnexpectedEOF}
	}
	return err
}
