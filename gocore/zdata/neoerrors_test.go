// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pickle "github.com/kisielk/og-rek"
	"lab.nexedi.com/kirr/neo/go/zodb"
	"lab.nexedi.com/kirr/neo/go/zodb/btree"
)

// neo/go's wrong-class error, provoked through neo/go itself: a blktab
// entry references oid 3 as a ZBlk0 while its record is a ZData. If neo/go
// changes how it reports this, IsWrongClass stops recognizing it here.
func TestIsWrongClass(t *testing.T) {
	recs := baseRecs()
	recs[3] = pk(ClassZData, pickle.Bytes("not a ZBlk0"))
	zc := memFile(t, recs)
	ctx := zc.Ctx(context.Background())
	obj, err := zc.Get(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	tree, ok := obj.(*btree.LOBTree)
	if !ok {
		t.Fatalf("oid 2: %T, want a LOBTree", obj)
	}
	v, ok, err := tree.Get(ctx, 0)
	if err != nil || !ok {
		t.Fatalf("blktab[0]: %v %v", ok, err)
	}
	blk, isZBlk0 := v.(*ZBlk0)
	if !isZBlk0 {
		t.Fatalf("blktab[0]: %T, want the *ZBlk0 ghost the reference names", v)
	}
	err = blk.PActivate(ctx)
	if err == nil {
		t.Fatal("activating a ZBlk0 whose record is a ZData succeeded")
	}
	if !IsWrongClass(err) {
		t.Errorf("IsWrongClass(%q (%T)) = false: neo/go reports a wrong class differently now", err, err)
	}
	// the text: what is left of the error when it is wrapped inside a
	// pickle's decoding (TestLegacyZBlkName goes that way)
	if !strings.Contains(err.Error(), wrongClassText) || !IsWrongClass(errors.New("decode: "+err.Error())) {
		t.Errorf("neo/go's wrong class error %q does not contain %q any more", err, wrongClassText)
	}
	for _, other := range []error{
		&zodb.NoObjectError{Oid: 3},
		fmt.Errorf("load: %w", context.Canceled),
	} {
		if IsWrongClass(other) {
			t.Errorf("IsWrongClass(%q) = true", other)
		}
	}
}

// The NEO client's corrupt-data errors cannot be provoked here (neo/go's
// storage node computes the checksum of what it sends, and never
// compresses): the texts IsCorruptData relies on are checked in the source
// of the neo/go this module builds with.
func TestIsCorruptDataTexts(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "lab.nexedi.com/kirr/neo/go").Output()
	if err != nil {
		t.Skipf("go list of neo/go: %v", err) // go not usable here: nothing to check against
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "neo", "client.go")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range neoCorruptTexts {
		if !strings.Contains(string(data), `fmt.Errorf("`+text) {
			t.Errorf("%s: no fmt.Errorf(%q...): neo/go's NEO client reports corrupt data differently now", src, text)
		}
		err := fmt.Errorf("load 0000000000000003@0000000000000001: %w", errors.New(text+"xyz"))
		if !IsCorruptData(err) {
			t.Errorf("IsCorruptData(%q) = false", err)
		}
	}
	for _, other := range []error{&zodb.NoObjectError{Oid: 3}, errors.New("connection reset by peer")} {
		if IsCorruptData(other) {
			t.Errorf("IsCorruptData(%q) = true", other)
		}
	}
}
