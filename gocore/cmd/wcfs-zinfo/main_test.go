// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testenv"
)

func runZInfo(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestSmall shows small.fs (written by genuine ZODB) at its head and at its
// first transaction with files, and checks the hashes against its manifest.
func TestSmall(t *testing.T) {
	dir := testenv.SharedZODB(t)
	m, err := testdb.LoadManifest(filepath.Join(dir, "small.json"))
	if err != nil {
		t.Fatal(err)
	}
	fs := filepath.Join(dir, "small.fs")

	for _, txn := range []*testdb.Txn{m.Last(), m.Transactions[1]} {
		code, out, errs := runZInfo(t, fs, "--at", txn.Tid.String(), "--blocks", "-j", "3")
		if code != 0 {
			t.Fatalf("@%s: exit %d\n%s%s", txn.Tid, code, out, errs)
		}
		if !strings.Contains(out, "at    "+txn.Tid.String()) {
			t.Errorf("@%s: revision not shown:\n%s", txn.Tid, out)
		}
		for name, f := range txn.Files {
			line := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, f.Oid.String()+"  "+name+" ") {
					line = l
				}
			}
			if line == "" || !strings.Contains(line, " "+f.Sha256+" ") {
				t.Errorf("@%s %s: want sha256 %s in:\n%s", txn.Tid, name, f.Sha256, out)
			}
			for _, b := range f.Blocks {
				if !strings.Contains(out, b.Sha256) {
					t.Errorf("@%s %s: block sha256 %s not listed", txn.Tid, name, b.Sha256)
				}
			}
		}
	}
}

func TestErrors(t *testing.T) {
	dir := testenv.SharedZODB(t)
	fs := filepath.Join(dir, "small.fs")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "no ZURL given"},
		{[]string{fs, "--at", "xyz"}, 2, "--at"},
		{[]string{fs, "zz"}, 2, `oid "zz": not a hexadecimal oid`},
		{[]string{fs, "-j", "0"}, 2, "-j 0"},
		{[]string{"/nonexistent/x.fs"}, 1, `open storage "/nonexistent/x.fs"`},
		{[]string{fs, "dead"}, 1, "load ZBigFile 000000000000dead @03f58e0051111111: oid missing"},
		{[]string{fs, "0"}, 1, "not a ZBigFile: class persistent.mapping.PersistentMapping"},
	} {
		code, out, errs := runZInfo(t, tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.want) {
			t.Errorf("wcfs-zinfo %q: exit %d, want %d with %q\n%s%s", tt.args, code, tt.code, tt.want, out, errs)
		}
	}
}
