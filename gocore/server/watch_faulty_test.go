// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/wproto"
)

// faultyPinTimeout is the server's -pintimeout in the faulty client tests.
const faultyPinTimeout = 1500 * time.Millisecond

// The faulty client variants (spec 8.4): what the client does with its pin,
// and whether the server must kill it.
var faultyVariants = []struct {
	name   string
	killed bool
}{
	{"no_pin_read", true},   // never reads the link: the send times out
	{"no_pin_reply", true},  // reads the pin, never replies: timeout
	{"stop_on_pin", false},  // exits right after receiving the pin
	{"eof_pin_reply", true}, // closes the link without bye, stays alive
	{"nak_pin_reply", true}, // replies "nak": killed at once
}

// checkFaulty waits until the faulty client was dealt with and checks it:
// killed (pinkill 1, "terminated" logged) or exited by itself (pinkill 0,
// checked after 2·pintimeout with the process left a zombie).
func checkFaulty(t *testing.T, tf *tFile, h *helperProc, killed bool) {
	t.Helper()
	if killed {
		st := h.wait(t, 30*time.Second)
		if st != nil && st.ExitCode() == 1 {
			t.Errorf("faulty client exited by itself (%s), want killed", st)
		}
		waitStats(t, tf.srv, map[string]int64{"pinkill": 1})
		if !strings.Contains(tf.srv.Log(), "terminated") {
			t.Errorf("kill not logged")
		}
		return
	}
	h.waitZombie(t, 30*time.Second)
	time.Sleep(2 * faultyPinTimeout)
	if n := stats(t, tf.srv)["pinkill"]; n != 0 {
		t.Errorf("pinkill = %d for a client that exited by itself", n)
	}
	if st := h.wait(t, 30*time.Second); st == nil || st.ExitCode() != 1 {
		t.Errorf("faulty client: %v, want exit code 1", st)
	}
}

// A faulty client is dealt with during the setup of its watch (its initial
// pin); the server and other clients carry on (spec 8.4
// test_wcfs_pinhfaulty_kill_on_watch).
func TestWatchFaultyOnWatch(t *testing.T) {
	t.Parallel()
	for _, v := range faultyVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			const bs = 4 << 10
			tf := newTFile(t, bs, fmt.Sprintf("-pintimeout=%s", faultyPinTimeout))
			at1 := tf.commit(2)
			tf.read(2)
			tf.commit(2)

			h := startHelper(t, v.name, tf.srv.Path("head", "watch"), wproto.Watch{Foid: tf.oid, At: at1}.String())
			if v.name != "no_pin_read" {
				h.expect(t, "pinned")
			} else {
				h.expect(t, "not-reading")
			}
			checkFaulty(t, tf, h, v.killed)

			// others carry on: a watch with the same pin, a commit, a read
			tl := openLink(t, tf.srv)
			if got, want := tl.mustWatch(tf.oid, at1), pinsOf(tf.oid, map[int64]zodb.Tid{2: at1}); got != want {
				t.Errorf("watch after the faulty client: pins %s, want %s", got, want)
			}
			tf.commit(2)
			if data := tf.read(2); !bytes.Equal(data, tf.db.ReadBlock("f", 2)) {
				t.Errorf("read after the faulty client: wrong data")
			}
			waitStats(t, tf.srv, map[string]int64{"WatchLink": 1, "Watch": 1})
		})
	}
}

// A faulty client is dealt with when a read pins it; the reader gets its
// data and its own pin, and everything carries on (spec 8.4
// test_wcfs_pinhfaulty_kill_on_access).
func TestWatchFaultyOnAccess(t *testing.T) {
	t.Parallel()
	for _, v := range faultyVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			const bs = 4 << 10
			tf := newTFile(t, bs, fmt.Sprintf("-pintimeout=%s", faultyPinTimeout))
			tf.commit(0)
			at2 := tf.commit(0)
			tf.read(1) // a hole, unchanged since the server started
			tl := openLink(t, tf.srv)
			tl.mustWatch(tf.oid, at2)
			h := startHelper(t, v.name+":ok", tf.srv.Path("head", "watch"), wproto.Watch{Foid: tf.oid, At: at2}.String())
			h.expect(t, "watching")

			tf.commit(1)
			done := make(chan []byte)
			go func() { done <- readBlk(t, tf.path(), 1, bs) }()
			select {
			case data := <-done:
				if !bytes.Equal(data, tf.db.ReadBlock("f", 1)) {
					t.Errorf("read #1: wrong data")
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("read #1 blocked by the faulty client")
			}
			if got, want := tl.takePins(), pinsOf(tf.oid, map[int64]zodb.Tid{1: tf.at0}); got != want {
				t.Errorf("reader's pins: %s, want %s", got, want)
			}
			checkFaulty(t, tf, h, v.killed)

			tf.commit(0)
			tf.read(0)
			if got, want := tl.takePins(), pinsOf(tf.oid, map[int64]zodb.Tid{0: at2}); got != want {
				t.Errorf("pins after the faulty client: %s, want %s", got, want)
			}
			waitStats(t, tf.srv, map[string]int64{"WatchLink": 1, "Watch": 1})
		})
	}
}
