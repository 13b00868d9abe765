// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
	"wendelin.dev/wcfs/gocore/wproto"
)

// rawSession writes in to a new head/watch link and returns everything the
// server sends until it closes the link (EOF).
func rawSession(t *testing.T, srv *wcfstest.Server, in string) string {
	t.Helper()
	fd, err := openRetry(srv.Path("head", "watch"), unix.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 1)
	go func() {
		data, _ := io.ReadAll(fdReader(fd))
		out <- string(data)
	}()
	// the server may stop reading before the end (ECONNRESET then)
	written := make(chan struct{})
	go func() {
		defer close(written)
		writeRetry(fd, []byte(in))
	}()
	select {
	case s := <-out:
		<-written // before fd can be reused
		unix.Close(fd)
		return s
	case <-time.After(time.Minute):
		t.Fatalf("head/watch: the server did not close the link after %q", in)
		return ""
	}
}

// Robust watch handling (spec 8.3 test_wcfs_watch_robust, and the checks
// the reference lacks).
func TestWatchRobust(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	tf := newTFile(t, bs)
	at1 := tf.commit(2)
	foid := tf.oid

	// a read blocked on head/watch does not keep its process from exiting
	h := startHelper(t, "readcancel", tf.srv.Path("head", "watch"), "")
	h.expect(t, "reading")
	if st := h.wait(t, 30*time.Second); st != nil && st.ExitCode() != 0 {
		t.Errorf("readcancel helper: %s", st)
	}

	// a file not looked up yet
	tl := openLink(t, tf.srv)
	want := fmt.Sprintf("setup watch f<%s> @%s: file not yet known to wcfs or is not a ZBigFile", foid, at1)
	if err := tl.watch(foid, at1); err == nil || err.Error() != want {
		t.Errorf("watch of a file not looked up:\n  got  %v\n  want %s", err, want)
	}
	want = fmt.Sprintf("setup watch f<%s> @ffffffffffffffff: file not yet known to wcfs or is not a ZBigFile", foid)
	if err := tl.watch(foid, 0); err == nil || err.Error() != want {
		t.Errorf("watch - of a file not looked up:\n  got  %v\n  want %s", err, want)
	}

	// garbage requests are errors; the link stays up
	tf.read(2)
	for payload, want := range map[string]string{
		"bla bla":                        `error bad watch: not a watch request: "bla bla"`,
		"watch 0000000000000001":         "error bad watch: expected 2 arguments, got 1",
		"watch 01 @0000000000000001":     "error bad watch: invalid oid",
		"watch " + foid.String() + " @x": "error bad watch: invalid at",
	} {
		if reply, err := tl.req(payload); err != nil || reply != want {
			t.Errorf("%q: reply %q, %v; want %q", payload, reply, err, want)
		}
	}
	if got := tl.mustWatch(foid, at1); got != "" {
		t.Errorf("watch @head after errors: pins %s", got)
	}

	// too far back: before the server started (the history's tail)
	tooFar := tf.at0 - 1
	err := tl.watch(foid, tooFar)
	prefix := fmt.Sprintf("setup watch f<%s> @%s: too far away back from head/at (@%s); δt = ", foid, tooFar, at1)
	if err == nil || !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("watch too far back:\n  got  %v\n  want %s...", err, prefix)
	}
	if got := tl.mustWatch(foid, at1); got != "" { // the link still works
		t.Errorf("watch after an error: pins %s", got)
	}

	// invalid frames: "0 error: ..." and the link is closed
	for in, want := range map[string]string{
		"zzz hello\n": `0 error: invalid frame: "zzz hello\n" (invalid stream)` + "\n",
		"hello\n":     `0 error: invalid frame: "hello\n"` + "\n",
		"2 ack\n":     "0 error: 2: reply on unexpected stream\n",
		"3 watch " + foid.String() + " @ffffffffffffff00\n3 watch " + foid.String() + " -\n": "0 error: 3: request on a stream already in flight\n",
		"5 " + strings.Repeat("x", wproto.MaxLine) + "\n":                                    fmt.Sprintf("0 error: line too long (> %d bytes)\n", wproto.MaxLine),
	} {
		if got := rawSession(t, tf.srv, in); got != want {
			t.Errorf("%.40q:\n  got  %q\n  want %q", in, got, want)
		}
	}

	// bye instead of ack: the client's watch fails with "link is down",
	// nobody is killed, commits go on
	tf.read(2)
	at2 := tf.commit(2)
	tl2 := openLink(t, tf.srv)
	tl2.onPin = func(p wproto.Pin) string {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tl2.l.CloseWrite(ctx)
		}()
		return ""
	}
	err = tl2.watch(foid, at1)
	if !errors.Is(err, wproto.ErrLinkDown) || !strings.Contains(err.Error(), "link is down") {
		t.Errorf("watch answered by bye: %v; want link is down", err)
	}
	at3 := tf.commit(2)
	if got := tl.mustWatch(foid, at3); got != "" {
		t.Errorf("watch @head after a bye: pins %s", got)
	}
	_ = at2
	waitStats(t, tf.srv, map[string]int64{"pinkill": 0, "WatchLink": 1, "Watch": 1})
}

// A watch at a revision before the file existed is refused (spec 8.3
// test_wcfs_watch_before_create): "file epoch detected".
func TestWatchBeforeCreate(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	tf := newTFile(t, bs)
	at1 := tf.commit(0)
	goid := tf.db.CreateFile("g", bs, testdb.ZBlk0)
	tf.db.WriteBlock("g", 1, randData(1, bs))
	at2 := tf.db.Commit("create g")
	tf.waitTid(at2)
	gpath := tf.srv.Path("head", "bigfile", goid.String())
	readBlk(t, gpath, 1, bs)

	tl := openLink(t, tf.srv)
	want := fmt.Sprintf("setup watch f<%s> @%s: file epoch detected @%s in between (at,head=@%s]", goid, at1, at2, at2)
	if err := tl.watch(goid, at1); err == nil || err.Error() != want {
		t.Errorf("watch before create:\n  got  %v\n  want %s", err, want)
	}
	// a failed setup leaves nothing registered
	waitStats(t, tf.srv, map[string]int64{"Watch": 0, "PinnedBlk": 0})
	if got := tl.mustWatch(goid, at2); got != "" {
		t.Errorf("watch @at2: pins %s", got)
	}

	// an epoch after the watch's at (blksize changed): moving the watch to
	// before it fails and leaves the watch at at2; a read pins to at2
	// itself (the history before an epoch is not kept)
	at3 := tf.commit(0)
	tf.db.SetBlkSize("g", 2*bs)
	at4 := tf.db.Commit("g: blksize doubled")
	tf.waitTid(at4)
	want = fmt.Sprintf("setup watch f<%s> @%s: file epoch detected @%s in between (at,head=@%s]", goid, at3, at4, at4)
	if err := tl.watch(goid, at3); err == nil || err.Error() != want {
		t.Errorf("watch across an epoch:\n  got  %v\n  want %s", err, want)
	}
	tl.takePins()
	readBlk(t, gpath, 0, 2*bs)
	if got, want := tl.takePins(), pinsOf(goid, map[int64]zodb.Tid{0: at2}); got != want {
		t.Errorf("read of g after its epoch: pins %s, want %s", got, want)
	}
	waitStats(t, tf.srv, map[string]int64{"Watch": 1, "PinnedBlk": 1, "WatchLink": 1})
}

// Going back in history on a watch is refused; the watch stays (spec 8.3
// test_wcfs_watch_going_back).
func TestWatchGoingBack(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	tf := newTFile(t, bs)
	at1 := tf.commit(0)
	tf.read(0)
	at2 := tf.commit(0)
	tl := openLink(t, tf.srv)
	if got, want := tl.mustWatch(tf.oid, at2), ""; got != want {
		t.Fatalf("watch @at2: pins %s", got)
	}
	want := fmt.Sprintf("setup watch f<%s> @%s: going back in history is forbidden", tf.oid, at1)
	if err := tl.watch(tf.oid, at1); err == nil || err.Error() != want {
		t.Errorf("going back:\n  got  %v\n  want %s", err, want)
	}
	waitStats(t, tf.srv, map[string]int64{"Watch": 1})
	// at_i -> at_i is fine, and "-" stops
	tl.mustWatch(tf.oid, at2)
	tl.mustWatch(tf.oid, 0)
	waitStats(t, tf.srv, map[string]int64{"Watch": 0})
	// a new watch after "-" may start anywhere
	if got, want := tl.mustWatch(tf.oid, at1), pinsOf(tf.oid, map[int64]zodb.Tid{0: at1}); got != want {
		t.Errorf("watch @at1 after -: pins %s, want %s", got, want)
	}
}

// A watch at a revision the server has not seen yet waits for it (spec 8.3
// test_wcfs_watch_setup_ahead); the wait ends when the link goes down.
func TestWatchSetupAhead(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	tf := newTFile(t, bs)
	at1 := tf.commit(0)
	tf.read(0)
	ahead := at1 + 1 // in the future; the next commit is after it

	tl := openLink(t, tf.srv)
	replied := make(chan error, 1)
	go func() { replied <- tl.watch(tf.oid, ahead) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-replied:
		t.Fatalf("watch @head+1 replied before any commit: %v", err)
	default:
	}
	at2 := tf.commit(0)
	if err := <-replied; err != nil {
		t.Fatalf("watch ahead: %v", err)
	}
	if got, want := tl.takePins(), pinsOf(tf.oid, map[int64]zodb.Tid{0: at1}); got != want {
		t.Errorf("watch @at1+1 once at2 came: pins %s, want %s", got, want)
	}
	_ = at2

	// far ahead: the link going down ends the wait, nothing stays registered
	tl2 := openLink(t, tf.srv)
	go tl2.watch(tf.oid, zodb.TidMax-1)
	time.Sleep(50 * time.Millisecond)
	tl2.close()
	waitStats(t, tf.srv, map[string]int64{"WatchLink": 1, "Watch": 1})
}

// A server that stops (here: its FUSE connection is aborted) ends the
// watch setups waiting for the future and its links.
func TestWatchServerStop(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	tf := newTFile(t, bs)
	tf.read(0)
	fd, err := openRetry(tf.srv.Path("head", "watch"), unix.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	var closeOnce sync.Once
	closeFd := func() { closeOnce.Do(func() { unix.Close(fd) }) }
	defer closeFd()
	req := fmt.Sprintf("1 watch %s @%s\n", tf.oid, zodb.TidMax-1)
	if err := writeRetry(fd, []byte(req)); err != nil {
		t.Fatal(err)
	}
	waitStats(t, tf.srv, map[string]int64{"WatchLink": 1})
	time.Sleep(50 * time.Millisecond) // the request is waiting

	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(tf.srv.Mnt))
	if err != nil || len(infos) == 0 {
		t.Fatalf("mount of %s not found: %v", tf.srv.Mnt, err)
	}
	abort := filepath.Join("/sys/fs/fuse/connections", fmt.Sprint(infos[0].Minor), "abort")
	if err := os.WriteFile(abort, []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := tf.srv.WaitExit(30 * time.Second); err != nil {
		t.Fatalf("server with a watch waiting for the future: %v\n%s", err, tf.srv.Log())
	}
	closeFd()
	unix.Unmount(tf.srv.Mnt, unix.MNT_DETACH) // the aborted connection's mount
}
