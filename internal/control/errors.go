package control

import (
	"errors"
	"fmt"

	"github.com/nsrun/nsrun/internal/partition"
)

// Kind is the kind of error a run answers with, or a client meets; it is
// an error itself, so that errors.Is(err, ErrUnknownNode) finds it in an
// *Error. Its text is its name on the wire (Response.Kind).
type Kind string

func (k Kind) Error() string { return string(k) }

// The kinds of error. An error of no kind ("") is a failure of the run
// itself (a netlink call that failed, a command that could not start).
const (
	// ErrUnknownNode: the request names a node the run does not have.
	ErrUnknownNode Kind = "unknown node"
	// ErrBadValue: a value of the request is not one the verb takes, or
	// the request is malformed.
	ErrBadValue Kind = "bad value"
	// ErrRunGone: the run cannot be reached, or ended before it answered.
	ErrRunGone Kind = "run gone"
	// ErrVersion: the client and the run speak different versions of the
	// protocol (*VersionError).
	ErrVersion Kind = "version mismatch"
	// ErrRefused: the caller may not do this (a node without control:
	// true, exec --root from inside the run).
	ErrRefused Kind = "refused"
)

// Error is an error from a run, or about reaching it: a message for
// people, and its Kind for programs.
type Error struct {
	Kind Kind
	Msg  string
	// Code is the exit code the run gave the error (125, or 126 and
	// 127 for a command that cannot run); 0 when not from the run.
	Code int
}

func (e *Error) Error() string { return e.Msg }

// Is reports whether target is e's kind.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && e.Kind != "" && k == e.Kind
}

// Errorf makes an *Error of kind k (k may be "").
func Errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf is the kind of err: an *Error's, ErrBadValue for a refused
// request (ErrBadRequest), ErrUnknownNode for a partition that names no
// node of the run, ErrVersion for a *VersionError; "" otherwise.
func KindOf(err error) Kind {
	var e *Error
	var v *VersionError
	switch {
	case errors.As(err, &v):
		return ErrVersion
	case errors.As(err, &e):
		return e.Kind
	case errors.Is(err, partition.ErrUnknownNode):
		return ErrUnknownNode
	case errors.Is(err, ErrBadRequest):
		return ErrBadValue
	}
	return ""
}

// Version is the version of the control protocol this nsrun speaks: a
// Request carries it, and a run refuses a request of another version
// (DecodeRequest) with a *VersionError. Version 1 had no version field.
const Version = 2

// VersionError is a client and a run of different protocol versions: the
// client must be the nsrun that started the run.
type VersionError struct {
	Client, Run int // the versions; 1 is one that sent none
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("control protocol version %d (this nsrun) against version %d (the run): use the nsrun that started the run", e.Client, e.Run)
}

// Is makes a *VersionError ErrVersion.
func (e *VersionError) Is(target error) bool { return target == ErrVersion }
