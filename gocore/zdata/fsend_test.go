// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"wendelin.dev/wcfs/gocore/zurl"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/zdata"
)

// The end of a FileStorage at open (fsend.go): a last transaction cut after
// its header is an error of the open that names the file; a transaction in
// progress (status 'c'), complete or still being written, is not one: the
// storage opens at the transaction before it, as neo/go's driver sees it.
func TestOpenCutEnd(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)
	db.CreateFile("f", 4096, testdb.ZBlk0)
	db.WriteBlock("f", 0, bytes.Repeat([]byte("a"), 4096))
	at1 := db.Commit("t1")
	db.WriteBlock("f", 1, bytes.Repeat([]byte("b"), 4096))
	at2 := db.Commit("t2")
	db.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// the last transaction: its length is in the last 8 bytes; its status
	// is the byte after tid and length
	start := int64(len(data)) - 8 - int64(binary.BigEndian.Uint64(data[len(data)-8:]))
	inProgress := bytes.Clone(data)
	inProgress[start+16] = 'c'

	for _, tc := range []struct {
		name string
		data []byte
		head zodb.Tid // 0: the open fails
	}{
		{"complete", data, at2},
		{"cut", data[:start+100], 0},
		{"in progress", inProgress, at1},
		{"in progress, cut", inProgress[:start+100], at1},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "x.fs")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			stor, err := zdata.OpenStorage(context.Background(), zurl.MustParse(p))
			if tc.head == 0 {
				if err == nil {
					stor.Close()
					t.Fatal("open succeeded")
				}
				if !strings.Contains(err.Error(), p+" does not end with a complete transaction: ") {
					t.Fatalf("open: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer stor.Close()
			if head := stor.Head(); head != tc.head {
				t.Errorf("head %s, want %s", head, tc.head)
			}
		})
	}
}
