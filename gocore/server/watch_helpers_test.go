// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
	"wendelin.dev/wcfs/gocore/wproto"
)

// tLink is a test client of head/watch: a client link over the open file.
// Pins from the server are recorded, applied to the client's view (pinned
// blocks per file) and acknowledged, unless onPin decides otherwise.
type tLink struct {
	t  testing.TB
	fd int
	l  *wproto.Link

	mu     sync.Mutex
	pins   []wproto.Pin                      // received, not taken yet
	pinned map[zodb.Oid]map[int64]zodb.Tid   // client view: block -> @rev
	onPin  func(p wproto.Pin) (reply string) // "" = do not reply
	hold   chan struct{}                     // if set, acks wait until it is closed
}

// openLink opens head/watch; the link is closed (with bye) at the end of the test.
func openLink(t testing.TB, srv *wcfstest.Server) *tLink {
	t.Helper()
	fd, err := openRetry(srv.Path("head", "watch"), unix.O_RDWR)
	if err != nil {
		t.Fatalf("open head/watch: %v", err)
	}
	tl := &tLink{
		t:      t,
		fd:     fd,
		l:      wproto.NewLink(wproto.RoleClient, wproto.NewFDTransport(fd)),
		pinned: make(map[zodb.Oid]map[int64]zodb.Tid),
	}
	go tl.serve()
	t.Cleanup(tl.close)
	return tl
}

// serve receives the server's requests (pins).
func (tl *tLink) serve() {
	for {
		req, err := tl.l.RecvReq(context.Background())
		if err != nil {
			return
		}
		go tl.handlePin(req)
	}
}

func (tl *tLink) handlePin(req *wproto.Request) {
	p, err := wproto.ParsePin(req.Payload)
	if err != nil {
		tl.t.Errorf("server request: %v", err)
		return
	}
	tl.mu.Lock()
	tl.pins = append(tl.pins, p)
	onPin, hold := tl.onPin, tl.hold
	tl.mu.Unlock()
	reply := wproto.ReplyAck
	if onPin != nil {
		reply = onPin(p)
	}
	if reply == "" {
		return
	}
	if hold != nil {
		<-hold
	}
	if reply == wproto.ReplyAck {
		tl.mu.Lock()
		m := tl.pinned[p.Foid]
		if m == nil {
			m = make(map[int64]zodb.Tid)
			tl.pinned[p.Foid] = m
		}
		if p.Rev == wproto.TidHead {
			delete(m, p.Blk)
		} else {
			m[p.Blk] = p.Rev
		}
		tl.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tl.l.Reply(ctx, req, reply)
}

// close says bye, waits for the server to close the link and closes it.
func (tl *tLink) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if tl.l.Err() == nil {
		if err := tl.l.CloseWrite(ctx); err == nil {
			select {
			case <-tl.l.RxDone():
			case <-ctx.Done():
				tl.t.Errorf("head/watch: the server did not close the link after bye")
			}
		}
	}
	tl.l.Close()
}

// takePins returns the pins received since the last call, as text.
func (tl *tLink) takePins() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	s := pinsText(tl.pins)
	tl.pins = nil
	return s
}

// view returns the client's pinned blocks of foid as text.
func (tl *tLink) view(foid zodb.Oid) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var pins []wproto.Pin
	for blk, rev := range tl.pinned[foid] {
		pins = append(pins, wproto.Pin{Foid: foid, Blk: blk, Rev: rev})
	}
	return pinsText(pins)
}

// pinsText renders pins sorted, like "f<oid>#2@<rev> f<oid>#3@head"; the
// file is omitted when all are of one file.
func pinsText(pins []wproto.Pin) string {
	sort.Slice(pins, func(i, j int) bool {
		if pins[i].Foid != pins[j].Foid {
			return pins[i].Foid < pins[j].Foid
		}
		return pins[i].Blk < pins[j].Blk
	})
	var s []string
	for _, p := range pins {
		s = append(s, fmt.Sprintf("%s#%d@%s", p.Foid, p.Blk, wproto.FormatRev(p.Rev)))
	}
	return strings.Join(s, " ")
}

// pinsOf renders the expected pins {blk: rev} of foid like pinsText.
func pinsOf(foid zodb.Oid, m map[int64]zodb.Tid) string {
	var pins []wproto.Pin
	for blk, rev := range m {
		pins = append(pins, wproto.Pin{Foid: foid, Blk: blk, Rev: rev})
	}
	return pinsText(pins)
}

// req sends a request and returns the reply.
func (tl *tLink) req(payload string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return tl.l.SendReq(ctx, payload)
}

// watch sends "watch <foid> @<at>" (at 0: "-") and returns the reply's
// error (nil for ok).
func (tl *tLink) watch(foid zodb.Oid, at zodb.Tid) error {
	tl.t.Helper()
	w := wproto.Watch{Foid: foid, At: at, Stop: at == 0}
	reply, err := tl.req(w.String())
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	return wproto.ParseWatchReply(reply)
}

// mustWatch is watch failing the test on error; it returns the pins sent
// during the setup.
func (tl *tLink) mustWatch(foid zodb.Oid, at zodb.Tid) string {
	tl.t.Helper()
	tl.takePins()
	if err := tl.watch(foid, at); err != nil {
		tl.t.Fatalf("watch %s @%s: %v", foid, at, err)
	}
	return tl.takePins()
}

// readBlk reads block blk of a file (one FUSE read: no readahead).
func readBlk(t testing.TB, path string, blk, bs int64) []byte {
	t.Helper()
	fd, err := openRetry(path, unix.O_RDONLY)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, bs)
	n, err := preadRetry(fd, buf, blk*bs)
	if err != nil {
		t.Fatalf("read %s #%d: %v", path, blk, err)
	}
	return buf[:n]
}

// evict drops the page cache of block blk of a file.
func evict(t testing.TB, path string, blk, bs int64) {
	t.Helper()
	fd, err := openRetry(path, unix.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Fadvise(fd, blk*bs, bs, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// stats returns .wcfs/stats as a map.
func stats(t testing.TB, srv *wcfstest.Server) map[string]int64 {
	t.Helper()
	data, err := os.ReadFile(srv.Path(".wcfs", "stats"))
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]int64)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, ok := strings.Cut(line, "\t: ")
		if !ok {
			t.Fatalf(".wcfs/stats: bad line %q", line)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf(".wcfs/stats: bad line %q", line)
		}
		m[k] = n
	}
	return m
}

// waitStats waits until the stats have the given values (gauges change
// asynchronously, e.g. at RELEASE).
func waitStats(t testing.TB, srv *wcfstest.Server, want map[string]int64) {
	t.Helper()
	var got map[string]int64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = stats(t, srv)
		ok := true
		for k, v := range want {
			if got[k] != v {
				ok = false
			}
		}
		if ok {
			return
		}
	}
	t.Fatalf(".wcfs/stats: %v; want %v", got, want)
}

// tFile is a test database with one file and a model of its blocks'
// history: the revisions at which every block changed.
type tFile struct {
	t    *testing.T
	db   *testdb.DB
	name string
	oid  zodb.Oid
	bs   int64
	at0  zodb.Tid             // the server starts here: the history tail
	revs map[int64][]zodb.Tid // block -> revisions that changed it, ↑
	srv  *wcfstest.Server
	seed int64
}

// newTFile creates a database with an empty file (at0) and starts a server.
func newTFile(t *testing.T, bs int64, args ...string) *tFile {
	t.Helper()
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	tf := &tFile{t: t, db: db, name: "f", bs: bs, revs: make(map[int64][]zodb.Tid)}
	tf.oid = db.CreateFile("f", bs, testdb.ZBlk0)
	tf.at0 = db.Commit("at0")
	tf.srv = wcfstest.Start(t, db.ZURL(), args...)
	return tf
}

// commit writes new data into blks and waits until the server processed it.
func (tf *tFile) commit(blks ...int64) zodb.Tid {
	tf.t.Helper()
	for _, blk := range blks {
		tf.seed++
		tf.db.WriteBlock(tf.name, blk, randData(tf.seed, int(tf.bs)))
	}
	tid := tf.db.Commit(fmt.Sprintf("write %v", blks))
	for _, blk := range blks {
		tf.revs[blk] = append(tf.revs[blk], tid)
	}
	tf.waitTid(tid)
	return tid
}

// waitTid waits until head/ shows tid. (Polling head/at, not the
// .wcfs/debug/zhead stream: a reader blocked on that stream can keep the
// mount busy for a moment after the server detached it, and the server
// then stays up at SIGTERM.)
func (tf *tFile) waitTid(tid zodb.Tid) {
	tf.t.Helper()
	if !waitHeadAt(tf.srv, tid) {
		tf.t.Fatalf("head/at never showed @%s", tid)
	}
}

// revAt is the model of BlkRevAt: the last change of blk ≤ at, or at0.
func (tf *tFile) revAt(blk int64, at zodb.Tid) zodb.Tid {
	rev := tf.at0
	for _, r := range tf.revs[blk] {
		if r <= at {
			rev = r
		}
	}
	return rev
}

// head returns the last revision committed.
func (tf *tFile) head() zodb.Tid {
	head := tf.at0
	for _, v := range tf.revs {
		if n := len(v); n > 0 && v[n-1] > head {
			head = v[n-1]
		}
	}
	return head
}

// wantPins is the model of a watch at at with tracked blocks: every block
// changed after at, pinned to its revision as of at.
func (tf *tFile) wantPins(tracked map[int64]bool, at zodb.Tid) map[int64]zodb.Tid {
	head := tf.head()
	m := make(map[int64]zodb.Tid)
	for blk := range tracked {
		if tf.revAt(blk, head) > at {
			m[blk] = tf.revAt(blk, at)
		}
	}
	return m
}

func (tf *tFile) path() string { return tf.srv.Path("head", "bigfile", tf.oid.String()) }

// read reads block blk through head/.
func (tf *tFile) read(blk int64) []byte { return readBlk(tf.t, tf.path(), blk, tf.bs) }

// A Go test process gets signals (the runtime preempts goroutines with
// SIGURG): a FUSE request of a thread that gets one is interrupted, and the
// server answers EINTR. The raw system calls of the tests retry, like the
// os package does.

// retryEINTR calls f until it does not fail with EINTR.
func retryEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

// openRetry opens path (O_CLOEXEC added), retrying on EINTR.
func openRetry(path string, flags int) (fd int, err error) {
	err = retryEINTR(func() error {
		fd, err = unix.Open(path, flags|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// preadRetry is pread retrying on EINTR.
func preadRetry(fd int, buf []byte, off int64) (n int, err error) {
	err = retryEINTR(func() error {
		n, err = unix.Pread(fd, buf, off)
		return err
	})
	return n, err
}

// writeRetry writes all of b, retrying on EINTR.
func writeRetry(fd int, b []byte) error {
	for len(b) > 0 {
		var n int
		err := retryEINTR(func() (err error) {
			n, err = unix.Write(fd, b)
			return err
		})
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
