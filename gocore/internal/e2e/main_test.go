// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package e2e

import (
	"flag"
	"testing"

	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// The suites run real wcfs servers (built once per test binary, before the
// tests run).
func TestMain(m *testing.M) {
	// neo/go logs through glog, which otherwise writes files into $TMPDIR
	flag.Set("logtostderr", "true")
	wcfstest.Main(m)
}
