// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package wcfstest

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// Run builds the server before any test runs: a test that makes its data
// and then starts a server must not see the build's duration between the
// two (the server's history reaches back only a minute before its start).
func TestBuiltBeforeTests(t *testing.T) {
	if build.err != nil {
		t.Fatal(build.err)
	}
	if build.bin == "" {
		t.Fatal("the server was not built before the tests ran")
	}
	if _, err := os.Stat(build.bin); err != nil {
		t.Fatalf("the server binary: %v", err)
	}
}
