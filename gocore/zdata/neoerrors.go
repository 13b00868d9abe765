// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"errors"
	"fmt"
	"strings"
)

// neo/go errors known only by their text.
//
// neo/go reports a few conditions that WCFS must tell apart only through
// its errors' text: their types are unexported (zodb's wrongClassError) or
// they are plain fmt.Errorf values (the NEO client's verdicts on the data a
// storage node sent). They are recognized here and nowhere else, and
// neoerrors_test.go pins each of them (provoked through neo/go where it can
// be, or read in neo/go's source where no storage here can make it): an
// upgrade of neo/go that changes one of them fails the tests instead of
// silently changing which errors are EIO of one read and which put a
// network storage down.

// IsWrongClass reports whether err is neo/go's error for a persistent
// object whose record is of another class than the object it was loaded
// into (zodb.wrongClassError: a reference names one class, the record
// another; or the object is cached under another class). Its type is
// unexported and, when the object was loaded for a reference inside a
// pickle, only its text survives (og-rek formats the cause with %s): both
// are recognized.
func IsWrongClass(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if fmt.Sprintf("%T", e) == "*zodb.wrongClassError" {
			return true
		}
	}
	return err != nil && strings.Contains(err.Error(), wrongClassText)
}

// wrongClassText is the start of zodb.wrongClassError's text.
const wrongClassText = `wrong class: want "`

// IsCorruptData reports whether err is a NEO client's verdict on the data
// of an object a storage node sent (checksum mismatch, data that does not
// decompress, an unknown compression): an answer about that object, which
// fails its load only, not a broken link to the storage.
func IsCorruptData(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, text := range neoCorruptTexts {
		if strings.Contains(msg, text) {
			return true
		}
	}
	return false
}

// neoCorruptTexts are the texts of lab.nexedi.com/kirr/neo/go/neo's client
// (neo/client.go, Client.Load) for corrupt data.
var neoCorruptTexts = []string{"data corrupt: ", "unsupported compression algorithm: "}
