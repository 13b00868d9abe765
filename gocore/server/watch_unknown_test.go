// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"fmt"
	"strings"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
)

// A watch of a file head/ does not serve fails with the reference's text;
// when the oid is no ZBigFile as of head the reply says why (the client
// tells its user why an open got EINVAL).
func TestWatchUnknownFileReason(t *testing.T) {
	t.Parallel()
	tf := newTFile(t, 4096)
	g := tf.db.CreateFile("g", 4096, testdb.ZBlk0) // not looked up
	at1 := tf.db.Commit("create g")
	tf.waitTid(at1)
	tl := openLink(t, tf.srv)

	prefix := func(foid zodb.Oid) string {
		return fmt.Sprintf("setup watch f<%s> @%s: file not yet known to wcfs or is not a ZBigFile", foid, at1)
	}
	// a ZBigFile: exactly the reference's text
	if err := tl.watch(g, at1); err == nil || err.Error() != prefix(g) {
		t.Errorf("watch of a ZBigFile not looked up:\n  got  %v\n  want %s", err, prefix(g))
	}
	for _, tc := range []struct {
		what   string
		foid   zodb.Oid
		reason string
	}{
		{"the root object", 0, "not a ZBigFile: class persistent.mapping.PersistentMapping"},
		{"a missing object", 0xdeadbeef, "no such object as of @"},
	} {
		err := tl.watch(tc.foid, at1)
		if err == nil || !strings.HasPrefix(err.Error(), prefix(tc.foid)+": ") || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("watch of %s:\n  got  %v\n  want %s: ...%s...", tc.what, err, prefix(tc.foid), tc.reason)
		}
	}
}
