// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	log "github.com/golang/glog"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/zdata"
)

// errInvalid marks "invalid argument" errors: bad names, objects that are
// not ZBigFiles or do not exist at the view's revision. They map to EINVAL.
var errInvalid = errors.New("invalid argument")

// invalidf returns an errInvalid-class error with the given message.
func invalidf(format string, argv ...any) error {
	return &classError{class: errInvalid, msg: fmt.Sprintf(format, argv...)}
}

type classError struct {
	class error
	msg   string
}

func (e *classError) Error() string        { return e.msg }
func (e *classError) Is(target error) bool { return target == e.class }

// isInvalid tells whether err belongs to the EINVAL class (spec 1.3, 1.8).
func isInvalid(err error) bool {
	var noObj *zodb.NoObjectError
	var noData *zodb.NoDataError
	return errors.Is(err, errInvalid) || errors.Is(err, zdata.ErrNotZBigFile) ||
		errors.As(err, &noObj) || errors.As(err, &noData)
}

// errno converts err into the errno returned to the kernel and logs it
// according to spec 1.8: an errno is returned as is; cancellation (FUSE
// INTERRUPT) is EINTR; a closed pipe is ECONNRESET; invalid-argument errors
// are EINVAL (warning); everything else is EIO (error). what names the
// operation for the log.
func errno(err error, what string) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e // only an error that *is* an errno: wrapped storage errnos are EIO
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, io.ErrClosedPipe):
		return syscall.ECONNRESET
	case isInvalid(err):
		log.WarningDepth(1, what+": "+err.Error())
		return syscall.EINVAL
	case errors.Is(err, errStorageDown):
		if log.V(1) { // the outage itself is logged when it starts
			log.InfoDepth(1, what+": "+err.Error())
		}
		return syscall.EIO
	case errors.Is(err, zdata.ErrSizeOverflow):
		log.ErrorDepth(1, what+": "+err.Error())
		return syscall.EFBIG
	default:
		log.ErrorDepth(1, what+": "+err.Error())
		return syscall.EIO
	}
}
