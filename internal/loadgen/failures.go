package loadgen

import (
	"errors"
	"io"
	"net"
	"slices"
	"syscall"
)

// class is the kind of a failed request.
type class int

const (
	classRefused class = iota // ECONNREFUSED on dial: nobody was listening
	classReset                // ECONNRESET or EPIPE: the server aborted the connection
	classEOF                  // the connection ended before the full response
	classTimeout              // no full response within RequestTimeout
	classNon200               // a full response whose status was not 200
	classOther
	numClasses
)

var classNames = [numClasses]string{"refused", "reset", "eof", "timeout", "non-200", "other"}

func (c class) String() string { return classNames[c] }

// classify sorts a request's error into a class by its cause, looking
// through the wrapping added by net and by client. ETIMEDOUT (the kernel
// gave up on the connection) reports itself as a timeout and is counted with
// our own deadlines.
func classify(err error) class {
	var se *StatusError
	if errors.As(err, &se) {
		return classNon200
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return classRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return classReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errShortBody):
		return classEOF
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return classTimeout
	}
	return classOther
}

// Failures counts failed requests by class.
type Failures struct {
	Refused int64 `json:"refused"`
	Reset   int64 `json:"reset"`
	EOF     int64 `json:"eof"`
	Timeout int64 `json:"timeout"`
	Non200  int64 `json:"non_200"`
	Other   int64 `json:"other"`

	// Statuses counts the non-200 responses by status code.
	Statuses map[int]int64 `json:"statuses,omitempty"`

	// Examples holds up to ExamplesPerClass distinct error strings for
	// each class seen, keyed by class name: "refused", "reset", "eof", "timeout",
	// "non-200", "other".
	Examples map[string][]string `json:"examples,omitempty"`
}

// Total returns the number of failed requests.
func (f *Failures) Total() int64 {
	return f.Refused + f.Reset + f.EOF + f.Timeout + f.Non200 + f.Other
}

func (f *Failures) counter(c class) *int64 {
	switch c {
	case classRefused:
		return &f.Refused
	case classReset:
		return &f.Reset
	case classEOF:
		return &f.EOF
	case classTimeout:
		return &f.Timeout
	case classNon200:
		return &f.Non200
	}
	return &f.Other
}

// add counts one failed request.
func (f *Failures) add(err error) {
	c := classify(err)
	*f.counter(c)++
	var se *StatusError
	if errors.As(err, &se) {
		if f.Statuses == nil {
			f.Statuses = make(map[int]int64)
		}
		f.Statuses[se.Code]++
	}
	f.example(c.String(), err.Error())
}

// example keeps msg if there is room and it is not already kept: a thousand
// copies of "connection refused" say no more than one.
func (f *Failures) example(name, msg string) {
	if len(f.Examples[name]) >= ExamplesPerClass || slices.Contains(f.Examples[name], msg) {
		return
	}
	if f.Examples == nil {
		f.Examples = make(map[string][]string)
	}
	f.Examples[name] = append(f.Examples[name], msg)
}

// merge adds g's counts and as many of its examples as fit into f.
func (f *Failures) merge(g *Failures) {
	for c := range numClasses {
		*f.counter(c) += *g.counter(c)
	}
	for code, n := range g.Statuses {
		if f.Statuses == nil {
			f.Statuses = make(map[int]int64)
		}
		f.Statuses[code] += n
	}
	for _, name := range classNames {
		for _, msg := range g.Examples[name] {
			f.example(name, msg)
		}
	}
}
