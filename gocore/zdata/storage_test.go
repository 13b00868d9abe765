// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// fakeDriver is a storage driver the test drives: it announces what the test
// tells it on its watch queue, answers loads with the oid's bytes, and
// closes its watch queue on Close.
type fakeDriver struct {
	url    string
	watchq chan<- zodb.Event

	mu     sync.Mutex
	head   zodb.Tid
	closed bool
	ended  bool // watchq closed
	nclose int
}

var fakes = struct {
	sync.Mutex
	m map[string]*fakeDriver
}{m: map[string]*fakeDriver{}}

func init() {
	zodb.RegisterDriver("zdatatest", func(ctx context.Context, u *url.URL, opt *zodb.DriverOptions) (zodb.IStorageDriver, zodb.Tid, error) {
		fakes.Lock()
		defer fakes.Unlock()
		d := fakes.m[u.Host]
		if d == nil {
			return nil, 0, fmt.Errorf("no fake %q", u.Host)
		}
		d.watchq = opt.Watchq
		return d, d.head, nil
	})
}

// openFake opens a storage over a new fake driver whose head is at0.
func openFake(t *testing.T, at0 zodb.Tid) (*storage, *fakeDriver) {
	t.Helper()
	d := &fakeDriver{url: "zdatatest://" + t.Name(), head: at0}
	fakes.Lock()
	fakes.m[t.Name()] = d
	fakes.Unlock()
	s, err := openStorage(context.Background(), d.url, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, d
}

func (d *fakeDriver) URL() string { return d.url }

func (d *fakeDriver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nclose++
	d.closed = true
	d.endLocked()
	return nil
}

func (d *fakeDriver) endLocked() {
	if !d.ended {
		d.ended = true
		close(d.watchq)
	}
}

// end closes the watch queue as a driver that gave up does.
func (d *fakeDriver) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.endLocked()
}

// commit announces a commit (the head moves first, as in a real driver).
func (d *fakeDriver) commit(tid zodb.Tid) {
	d.mu.Lock()
	d.head = tid
	d.mu.Unlock()
	d.watchq <- &zodb.EventCommit{Tid: tid}
}

func (d *fakeDriver) Load(ctx context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, 0, &zodb.OpError{URL: d.url, Op: "load", Args: xid, Err: errors.New("driver closed")}
	}
	return &mem.Buf{Data: []byte(xid.Oid.String())}, 1, nil
}

func (d *fakeDriver) Sync(ctx context.Context) (zodb.Tid, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.head, nil
}

func (d *fakeDriver) Iterate(ctx context.Context, tidMin, tidMax zodb.Tid) zodb.ITxnIterator {
	return nil
}

// recv receives one event from q (within 10 s); ok false if q was closed.
func recv(t *testing.T, q <-chan zodb.Event) (zodb.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-q:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
		return nil, false
	}
}

func wantCommit(t *testing.T, q <-chan zodb.Event, tid zodb.Tid) {
	t.Helper()
	ev, ok := recv(t, q)
	if e, isCommit := ev.(*zodb.EventCommit); !ok || !isCommit || e.Tid != tid {
		t.Fatalf("event %v (open %v), want commit %s", ev, ok, tid)
	}
}

// Every watch gets the commits after its at0, in order; one that stopped
// reading and was deleted holds up nobody; Sync waits until the head shows
// the driver's head.
func TestStorageWatch(t *testing.T) {
	s, d := openFake(t, 10)
	q1 := make(chan zodb.Event)
	if at0 := s.AddWatch(q1); at0 != 10 {
		t.Fatalf("at0 %s, want 10", at0)
	}
	qdead := make(chan zodb.Event) // never read, deleted below
	s.AddWatch(qdead)

	go d.commit(11)
	go func() { // the delivery of 11 to it gives up
		time.Sleep(50 * time.Millisecond)
		s.DelWatch(qdead)
	}()
	wantCommit(t, q1, 11)
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h := s.Head(); h != 11 {
		t.Fatalf("head %s after Sync, want 11", h)
	}
	q2 := make(chan zodb.Event, 8)
	if at0 := s.AddWatch(q2); at0 != 11 {
		t.Fatalf("at0 %s, want 11", at0)
	}
	go func() { d.commit(12); d.commit(13) }()
	wantCommit(t, q1, 12)
	wantCommit(t, q1, 13)
	wantCommit(t, q2, 12)
	wantCommit(t, q2, 13)
	select {
	case ev := <-qdead:
		t.Fatalf("deleted watch got %v", ev)
	default:
	}

	// Sync returns once the commits the driver knows have been announced
	d.mu.Lock()
	d.head = 14 // known to the driver, announced later
	d.mu.Unlock()
	synced := make(chan error, 1)
	go func() { synced <- s.Sync(context.Background()) }()
	select {
	case err := <-synced:
		t.Fatalf("Sync returned (%v) before the commit was announced", err)
	case <-time.After(50 * time.Millisecond):
	}
	go d.commit(14)
	wantCommit(t, q1, 14)
	wantCommit(t, q2, 14)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
}

// A driver that gives up: the watches get its error and are closed, and
// every later call fails with it as the cause; so does a watch added then.
func TestStorageDown(t *testing.T) {
	s, d := openFake(t, 10)
	q := make(chan zodb.Event)
	s.AddWatch(q)
	linkErr := errors.New("link to the server lost")
	go func() { d.watchq <- &zodb.EventError{Err: linkErr}; d.end() }()
	if ev, ok := recv(t, q); !ok || ev.(*zodb.EventError).Err != linkErr {
		t.Fatalf("event %v, want the driver's error", ev)
	}
	if _, ok := recv(t, q); ok {
		t.Fatal("watch not closed")
	}
	<-s.down
	check := func(what string, err error) {
		t.Helper()
		var e *zodb.OpError
		if !errors.As(err, &e) || !errors.Is(err, linkErr) || !strings.Contains(err.Error(), d.url) {
			t.Errorf("%s: %v; want an OpError of %s caused by %v", what, err, d.url, linkErr)
		}
	}
	_, _, err := s.Load(context.Background(), zodb.Xid{At: 10, Oid: 1})
	check("load", err)
	check("sync", s.Sync(context.Background()))

	q2 := make(chan zodb.Event)
	if at0 := s.AddWatch(q2); at0 != 10 {
		t.Errorf("at0 %s after down, want 10", at0)
	}
	if ev, ok := recv(t, q2); !ok || !errors.Is(ev.(*zodb.EventError).Err, linkErr) {
		t.Fatalf("late watch: %v, want the reason", ev)
	}
	if _, ok := recv(t, q2); ok {
		t.Fatal("late watch not closed")
	}
	// a late watch deleted without reading gets nothing and is not closed
	q3 := make(chan zodb.Event)
	s.AddWatch(q3)
	s.DelWatch(q3)
	time.Sleep(50 * time.Millisecond) // for a send in progress to give up
	select {
	case ev, ok := <-q3:
		t.Fatalf("deleted late watch: %v %v", ev, ok)
	default:
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d.nclose != 1 {
		t.Errorf("driver closed %d times", d.nclose)
	}
}

// A driver that stops watching without an error still gives a reason.
func TestStorageWatchEnded(t *testing.T) {
	s, d := openFake(t, 10)
	d.end()
	<-s.fanDone
	_, _, err := s.Load(context.Background(), zodb.Xid{At: 10, Oid: 1})
	if !errors.Is(err, errWatchEnded) || strings.Contains(err.Error(), "nil") {
		t.Fatalf("load: %v", err)
	}
}

// A commit whose tid does not go up takes the storage down.
func TestStorageTidNotUp(t *testing.T) {
	s, d := openFake(t, 10)
	q := make(chan zodb.Event)
	s.AddWatch(q)
	go d.commit(9)
	ev, ok := recv(t, q)
	if e, isErr := ev.(*zodb.EventError); !ok || !isErr || !strings.Contains(e.Err.Error(), "not going up") {
		t.Fatalf("event %v", ev)
	}
	if _, ok := recv(t, q); ok {
		t.Fatal("watch not closed")
	}
	if err := s.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "not going up") {
		t.Fatalf("sync: %v", err)
	}
}

// A driver whose Sync gives a head before the commits it announced takes
// the storage down.
func TestStorageSyncBack(t *testing.T) {
	s, d := openFake(t, 10)
	q := make(chan zodb.Event)
	s.AddWatch(q)
	go d.commit(11)
	wantCommit(t, q, 11)
	d.mu.Lock()
	d.head = 10
	d.mu.Unlock()
	if err := s.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "before the last commit") {
		t.Fatalf("sync: %v", err)
	}
	if _, ok := recv(t, q); ok {
		t.Fatal("watch not closed")
	}
	_, _, err := s.Load(context.Background(), zodb.Xid{At: 11, Oid: 1})
	if err == nil || !strings.Contains(err.Error(), "before the last commit") {
		t.Fatalf("load after: %v", err)
	}
}

// Close: the reason is ErrStorageClosed, the watches are closed when it
// returns, a second Close is harmless.
func TestStorageClose(t *testing.T) {
	s, d := openFake(t, 10)
	q := make(chan zodb.Event, 1)
	s.AddWatch(q)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-q; ok {
		t.Fatal("watch not closed by Close")
	}
	_, _, err := s.Load(context.Background(), zodb.Xid{At: 10, Oid: 1})
	if !errors.Is(err, ErrStorageClosed) {
		t.Fatalf("load after close: %v", err)
	}
	s.Close()
	if d.nclose != 1 {
		t.Errorf("driver closed %d times", d.nclose)
	}
}

// Loads racing with the driver giving up see data or an error with a cause
// (run with -race: the down state is synchronized).
func TestStorageLoadRacesShutdown(t *testing.T) {
	for i := 0; i < 50; i++ {
		s, d := openFake(t, 10)
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 50; k++ {
					_, _, err := s.Load(context.Background(), zodb.Xid{At: 10, Oid: 1})
					if err != nil && errors.Unwrap(err) == nil {
						t.Errorf("load error without cause: %v", err)
						return
					}
					if err != nil {
						_ = err.Error()
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.watchq <- &zodb.EventError{Err: errors.New("gone")}
			d.end()
		}()
		wg.Wait()
		s.Close()
	}
}
