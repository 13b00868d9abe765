// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package e2e

import (
	"fmt"
	"net/url"
	"testing"

	"wendelin.dev/wcfs/gocore/internal/neotest"
	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/zurl"
)

// Spellings of one real NEO cluster (TLS, as deployments run it) that
// clients may produce map to one mountpoint, and every spelling neo/go
// accepts really opens that cluster; another cluster or master does not.
func TestSpellingsOfOneClusterShareAMountpoint(t *testing.T) {
	_, fsPath := testdb.SmallFixture(t)
	c := neotest.Start(t, fsPath, neotest.Options{Name: "prod", TLS: true})
	m := c.MasterAddr
	other := "127.0.0.1:1" // a second master (down); sorts before 127.0.0.1:<port>
	q := url.QueryEscape
	ca, cert, key := q(c.TLS.CA), q(c.TLS.Cert), q(c.TLS.Key)

	same := []string{
		c.ZURL(), // as zstor_2zurl spells it: neos + ca, cert, key
		fmt.Sprintf("neo://prod@%s?ca=%s&cert=%s&key=%s", m, ca, cert, key),
		fmt.Sprintf("neos://prod@%s?key=%s&ca=%s&cert=%s", m, key, ca, cert),
		fmt.Sprintf("neos://prod@%s?cert=%s&compress=true&key=%s&cache-size=1024&ca=%s&logfile=%s", m, cert, key, ca, q("/var/log/neo client.log")),
		fmt.Sprintf("neo://prod@%s?ca=%s&cert=%s&key=%s&read-only=true", m, ca, cert, key),
		"neos://prod@" + m, // credentials from $NEO_CA etc. (set below)
	}
	t.Setenv("NEO_CA", c.TLS.CA)
	t.Setenv("NEO_CERT", c.TLS.Cert)
	t.Setenv("NEO_KEY", c.TLS.Key)

	want := mountpoint(t, c.ZURL())
	for _, s := range same {
		z, err := zurl.Parse(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if got := z.Mountpoint(); got != want {
			t.Errorf("%s\n\tnormalizes to %s\n\tmountpoint %s, want %s", s, z.Normalized(), got, want)
		}
		stor := neotest.Open(t, s)
		if stor.Head().String() != c.Head {
			t.Errorf("%s: head %s, want %s", s, stor.Head(), c.Head)
		}
	}

	// Masters in another order: one mountpoint. (neo/go dials only the
	// first master of the list, so only the spelling with the live master
	// first opens; the mountpoint must not depend on that.)
	mpA := mountpoint(t, fmt.Sprintf("neos://prod@%s,%s", m, other))
	mpB := mountpoint(t, fmt.Sprintf("neos://prod@%s,%s?ca=%s&cert=%s&key=%s", other, m, ca, cert, key))
	if mpA != mpB {
		t.Errorf("masters reordered: %s != %s", mpA, mpB)
	}
	neotest.Open(t, fmt.Sprintf("neos://prod@%s,%s?ca=%s&cert=%s&key=%s", m, other, ca, cert, key))

	// what designates another storage gets another mountpoint
	for _, z := range []string{
		"neos://other@" + m,                        // another cluster name
		"neos://prod@127.0.0.1:2",                  // another master
		fmt.Sprintf("neo://prod@%s", m),            // no TLS at all: not the same service
		fmt.Sprintf("neos://prod@%s,%s", m, other), // one more master
	} {
		if mp := mountpoint(t, z); mp == want {
			t.Errorf("%s: mountpoint %s: want one different from %s", z, mp, want)
		}
	}
}

// mountpoint returns the mountpoint of the zurl s.
func mountpoint(t *testing.T, s string) string {
	t.Helper()
	z, err := zurl.Parse(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return z.Mountpoint()
}
