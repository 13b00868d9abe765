// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"context"
	"errors"
	"fmt"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// Error classes. Errors returned by this package carry the oid, the revision
// and the reason in their message; use errors.Is with these values (and
// errors.As with *zodb.NoObjectError / *zodb.NoDataError for missing objects,
// errors.Is with context.Canceled for cancellation) to classify them.
var (
	// ErrMalformed: the database holds data that does not decode as the
	// wendelin.core format: a malformed pickle or object state, ZBlk1
	// chunks that overlap, block data longer than blksize, ...
	ErrMalformed = errors.New("malformed data")

	// ErrNotZBigFile: the object is not a ZBigFile (the message says its class).
	ErrNotZBigFile = errors.New("not a ZBigFile")

	// ErrUnknownZBlk: a blktab entry points to an object of a class that
	// is not a ZBlk format (the message says its class).
	ErrUnknownZBlk = errors.New("unknown ZBlk class")

	// ErrSizeOverflow: (max block + 1) * blksize does not fit in int64 (EFBIG).
	ErrSizeOverflow = errors.New("file size overflows int64")

	// ErrNoTxn: the context given to a loading function does not carry a
	// ZODB transaction (see ZConn.Ctx).
	ErrNoTxn = errors.New("context carries no ZODB transaction (use ZConn.Ctx)")
)

// classError is an error of a given class (ErrMalformed, ...) with a specific
// message, possibly wrapping a cause.
type classError struct {
	class error
	msg   string
	err   error
}

func (e *classError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}
func (e *classError) Is(target error) bool { return target == e.class }
func (e *classError) Unwrap() error        { return e.err }

// malformedf returns an ErrMalformed error with the given message.
func malformedf(format string, argv ...any) error {
	return &classError{class: ErrMalformed, msg: fmt.Sprintf(format, argv...)}
}

// malformed marks an error of the record decoder (a record that is not a
// valid state of its class) as ErrMalformed.
func malformed(err error) error {
	return &classError{class: ErrMalformed, msg: err.Error()}
}

// classErrorf returns an error of the given class with the given message.
func classErrorf(class error, format string, argv ...any) error {
	return &classError{class: class, msg: fmt.Sprintf(format, argv...)}
}

// isMissing tells whether err says that an object does not exist (at the revision).
func isMissing(err error) bool {
	var e1 *zodb.NoObjectError
	var e2 *zodb.NoDataError
	return errors.As(err, &e1) || errors.As(err, &e2)
}

// classifyLoadErr marks errors of activating a persistent object through
// neo/go: storage errors, missing objects and cancellation are kept as they
// are; anything else is a decoding failure and is marked ErrMalformed.
func classifyLoadErr(err error) error {
	if err == nil || isMissing(err) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrMalformed) {
		return err
	}
	var op *zodb.OpError
	if errors.As(err, &op) && op.Op != "loadpy" {
		return err // storage error
	}
	return &classError{class: ErrMalformed, msg: "malformed", err: err}
}
