// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

// Package testdb lets Go tests make and change real ZODB databases, written
// by genuine Python ZODB, and know what every ZBigFile holds at every
// revision.
//
// It drives the Python toolkit tools/pylib/ztestdb through one subprocess
// per database ("python -m ztestdb serve DB", a JSON-lines protocol
// documented in tools/pylib/ztestdb/serve.py), the way neo/go's own tests
// commit through Python. One process serves any number of commits; the
// database can be read by other processes (a WCFS server) at the same time,
// but only this process writes it.
//
//	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
//	db.CreateFile("zf", 64<<10, testdb.ZBlk1)
//	db.WriteBlock("zf", 0, data)
//	tid := db.Commit("t1")
//	m := db.Manifest() // expected content of every file at every tid
//
// Methods fail the test (t.Fatal) on error and must be called from the test
// goroutine; Exec is the goroutine-safe, error-returning form. The process is
// stopped and reaped when the test ends (t.Cleanup), or by Close.
//
// The interpreter is testenv's ($WCFS_PYTHON, else <repo>/.venv/bin/python);
// tests skip with a message telling to run `make deps` when it is absent.
// Manifest, ParseManifest and LoadManifest also read the fixtures in
// ../shared/testdata/zodb (SmallFixture), so that tests of those and of
// toolkit-made databases use the same types.
//
// One concern a file: toolkit.go runs the toolkit process and speaks its
// protocol, requests.go is the request API on a DB, manifest.go the expected
// content, fixtures.go the databases of ../shared, gen.go the big databases of
// benchmarks, records.go raw records for tests of bad data.
package testdb
