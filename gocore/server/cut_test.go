// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// A database whose last transaction is cut (a truncated copy), wherever the
// cut is, is an error at start that names the file: never a server that
// serves and then finds the cut, failing every read until it exits.
func TestCutLastTransaction(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)
	db.CreateFile("f", 4096, testdb.ZBlk0)
	db.WriteBlock("f", 0, bytes.Repeat([]byte("a"), 4096))
	db.Commit("t1")
	db.WriteBlock("f", 1, bytes.Repeat([]byte("b"), 4096))
	db.Commit("t2")
	db.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	txns := fsTxns(t, data)
	last := txns[len(txns)-1]
	// the transaction: header (23 bytes), user, description, extension,
	// data records (42-byte header, pickle), its length again (8 bytes)
	p := last.start
	strs := int64(binary.BigEndian.Uint16(data[p+17:])) + int64(binary.BigEndian.Uint16(data[p+19:])) +
		int64(binary.BigEndian.Uint16(data[p+21:]))
	rec := p + 23 + strs
	for _, cut := range []struct {
		where string
		at    int64
	}{
		{"transaction header", p + 10},
		{"description", p + 23 + strs - 1},
		{"data record header", rec + 10},
		{"data record pickle", rec + 42 + 5},
		{"trailing length", last.end - 4},
	} {
		t.Run(strings.ReplaceAll(cut.where, " ", "_"), func(t *testing.T) {
			t.Parallel()
			cutPath := filepath.Join(t.TempDir(), "cut.fs")
			if err := os.WriteFile(cutPath, data[:cut.at], 0o644); err != nil {
				t.Fatal(err)
			}
			srv, err := wcfstest.StartErr(t, "file://"+cutPath)
			var se *wcfstest.StartError
			if err == nil {
				// what a client sees meanwhile
				_, rerr := os.ReadFile(srv.Path("head", "at"))
				t.Fatalf("cut in the %s (@%d of the transaction @%d): the server started (head/at: %v)",
					cut.where, cut.at, last.start, rerr)
			}
			if !errors.As(err, &se) || se.ExitCode != 1 || !strings.Contains(se.Status, cutPath) {
				t.Fatalf("cut in the %s: %v; want exit code 1 and a status naming %s", cut.where, err, cutPath)
			}
			t.Logf("%s: %s", cut.where, se.Status)
		})
	}
}
