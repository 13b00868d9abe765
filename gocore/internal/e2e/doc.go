// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package e2e holds the end-to-end suites of WCFS over network storages:
// real wcfs servers (wcfstest) and gateways in front of a genuine ZEO server
// (zeotest) and a real NEO cluster (neotest), with databases written by
// genuine ZODB (testdb), and the storages taken away and brought back.
// It has no code of its own: only this comment and _test.go files.
//
//   - TestServeNEO, TestServeZEO: the files at head and at every revision
//     read through the mount over neo://, neos:// and zeo://; commits made
//     through ZEO while mounted followed by head/, the page cache and @<rev>;
//   - TestStorageOutage, TestStorageHang: a storage that goes away or hangs
//     (SIGSTOP) under a running server: EIO within a bounded time, cached
//     data served, .wcfs/zstor, the server's exit naming the storage once it
//     is back;
//   - TestGatewayAfterStorageOutage: joins during and after an outage;
//   - TestDataLayerSameBytes: gocore/zdata reads the same bytes from file://,
//     neo:// and neos://;
//   - TestSpellingsOfOneClusterShareAMountpoint: zurls of one NEO cluster
//     spelled in every way clients do share one mountpoint and open;
//   - BenchmarkColdReadNEO: cold reads through a mount over NEO against the
//     data layer alone.
//
// The suites of one part each (server, gateway, client, zdata) stay beside
// that part; here are those that need a storage server process of their own.
// The helper packages keep only the tests of the helpers themselves.
package e2e
