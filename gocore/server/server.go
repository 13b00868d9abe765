// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	log "github.com/golang/glog"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/history"
	"wendelin.dev/wcfs/gocore/internal/fusesplice"
	"wendelin.dev/wcfs/gocore/zdata"
)

// Server is one WCFS filesystem: a storage, the views of it, and the FUSE
// mount serving them.
type Server struct {
	opt Options

	// ctx lives as long as the server; canceled when serving ends.
	ctx    context.Context
	cancel context.CancelFunc

	stor   zodb.IStorage // zstor
	zstor  *zstor        // the storage's availability (zstor.go)
	db     *zodb.DB
	watchq chan zodb.Event
	events <-chan zodb.Event

	head  *headView
	revs  *revViews
	root  *rootNode
	zhead *zheadFile // .wcfs/debug/zhead, nil without -debug
	stats *Stats

	fuse *fuse.Server
	// storer splices page cache stores of blocks in place (nil: writes)
	storer         *fusesplice.Storer
	spliceWarnOnce sync.Once
	act            *activity

	uploads     sync.WaitGroup      // page cache uploads and prefetches in flight
	prefetchSem *semaphore.Weighted // bounds concurrent prefetches
	workers     sync.WaitGroup      // follower, gc, autoexit

	fatalOnce sync.Once
	fatal     chan error // a background failure that ends serving
	served    chan struct{}
}

// Open validates opt and opens the storage and the head view. Nothing is
// mounted yet: a failure here leaves nothing behind.
func Open(ctx context.Context, opt Options) (_ *Server, err error) {
	if err := opt.normalize(); err != nil {
		return nil, err
	}
	s := &Server{
		opt:    opt,
		stats:  &Stats{},
		fatal:  make(chan error, 1),
		served: make(chan struct{}),

		prefetchSem: semaphore.NewWeighted(int64(max(2, runtime.NumCPU()))),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	octx, cancel := context.WithTimeout(ctx, opt.OpenTimeout)
	defer cancel()
	stor, err := zdata.OpenStorage(octx, opt.ZURL)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (no answer within %s)", err, opt.OpenTimeout)
		}
		return nil, err
	}
	s.zstor = newZStor(stor, &s.opt)
	s.stor = s.zstor
	s.watchq = make(chan zodb.Event)
	at0 := s.stor.AddWatch(s.watchq)
	s.events = eventQueue(s.ctx, s.watchq)
	s.db = zdata.NewDB(s.stor)
	zhead, err := zdata.OpenConn(octx, s.db, at0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", opt.ZURL.StorageURL(), err)
	}
	s.head = newHeadView(s, zhead, history.New(s.stor, at0))
	s.revs = &revViews{srv: s, byAt: make(map[zodb.Tid]*revView), trim: make(chan struct{}, 1)}
	s.root = &rootNode{srv: s}
	if opt.Debug {
		s.zhead = &zheadFile{srv: s}
	}
	return s, nil
}

// Stats returns the counters of .wcfs/stats.
func (s *Server) Stats() *Stats { return s.stats }

// Mount mounts the filesystem and starts serving it; it returns once the
// mount serves requests, with the commit follower running. On failure
// nothing stays mounted and the storage is released.
func (s *Server) Mount() (err error) {
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	sec := time.Second
	logger := stdlog.New(glogWriter{info: true}, "", 0)
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:                   s.opt.ZURL.StorageURL(),
			Name:                     "wcfs",
			DirectMountStrict:        os.Geteuid() == 0,
			MaxWrite:                 fuse.MAX_KERNEL_WRITE,
			MaxBackground:            maxBackground,
			ExplicitDataCacheControl: true,
			DisableXAttrs:            true,
			DisableSplice:            true, // replies are memory, never file descriptors
			Debug:                    s.opt.TraceFUSE,
			Logger:                   logger,
			PanicHandler:             panicHandler,
		},
		// node ids are the (automatic, never reused) inode numbers: the
		// splice stores address nodes by StableAttr().Ino
		ExternalNodeID: true,
		EntryTimeout:   &sec,
		AttrTimeout:    &sec,
		UID:            uint32(os.Getuid()),
		GID:            uint32(os.Getgid()),
		Logger:         logger,
	}
	s.act = newActivity(newStreamFS(readOnlyFS{fs.NewNodeFS(s.root, opts)}))
	if err := checkNotMounted(s.opt.Mountpoint); err != nil {
		return err // mounted meanwhile (Open checked it already)
	}
	srv, err := fuse.NewServer(s.act, s.opt.Mountpoint, &opts.MountOptions)
	if err != nil {
		return fmt.Errorf("mount %s: %w", s.opt.Mountpoint, err)
	}
	s.fuse = srv
	s.storer = newStorer(srv) // before serving: read-only afterwards
	go func() {
		srv.Serve()
		close(s.served)
	}()
	if err := srv.WaitMount(); err != nil {
		s.abortMount()
		return fmt.Errorf("mount %s: %w", s.opt.Mountpoint, err)
	}

	ks := srv.KernelSettings()
	if !ks.SupportsNotify(fuse.NOTIFY_STORE_CACHE) || !ks.SupportsNotify(fuse.NOTIFY_RETRIEVE_CACHE) {
		s.abortMount()
		return fmt.Errorf("kernel FUSE (API %d.%d) does not support pagecache control", ks.Major, ks.Minor)
	}
	if ks.Flags64()&fuse.CAP_EXPLICIT_INVAL_DATA == 0 {
		w := "kernel FUSE does not support explicit data cache invalidation:\n" +
			"-> the kernel drops the page cache of head files on every size or mtime change\n" +
			"-> performance will be AWFUL.\n" +
			"   (Linux 5.2+ has it: kernel commit ad2ba64dd489)"
		log.Warning(w)
		fmt.Fprintln(os.Stderr, "W: "+w)
	}

	s.start(func(ctx context.Context) {
		if err := s.follow(ctx, s.events); err != nil && !s.zstor.lost(err) {
			s.fail(fmt.Errorf("zwatcher failed: %w", err))
		}
	})
	s.start(func(ctx context.Context) { s.zstor.monitor(ctx, s.fail) })
	s.start(s.gcLoop)
	if s.opt.AutoExit {
		s.start(s.autoExitLoop)
	}
	return nil
}

// start runs f(s.ctx) in a goroutine accounted in s.workers.
func (s *Server) start(f func(ctx context.Context)) {
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		f(s.ctx)
	}()
}

// abortMount undoes a mount whose setup failed.
func (s *Server) abortMount() {
	if err := s.fuse.Unmount(); err != nil {
		unix.Unmount(s.opt.Mountpoint, unix.MNT_DETACH)
	}
	<-s.served
}

// fail ends serving because of a background failure.
func (s *Server) fail(err error) {
	s.fatalOnce.Do(func() { s.fatal <- err })
}

// Wait serves until the filesystem is unmounted (by Unmount, -autoexit or
// from outside: nil) or a background failure (the error, after unmounting;
// if the mount is busy it is detached lazily). Then it releases everything.
func (s *Server) Wait() error {
	var err error
	select {
	case <-s.served:
	case err = <-s.fatal:
		log.Errorf("%s", err)
		log.Errorf("%s: unmounting: head/ can no longer follow the database", s.opt.Mountpoint)
		if e := unix.Unmount(s.opt.Mountpoint, 0); e != nil {
			log.Errorf("%s: unmount: %s; detaching it lazily%s", s.opt.Mountpoint, e, s.busyReport())
			unix.Unmount(s.opt.Mountpoint, unix.MNT_DETACH)
		}
		// a lazily detached mount is served until its users let go of it:
		// do not wait for them (a service manager restarts the server
		// only once it exited); they get ENOTCONN
		select {
		case <-s.served:
		case <-time.After(detachedGrace):
			log.Errorf("%s: detached mount still in use: exiting anyway (its users get ENOTCONN)", s.opt.Mountpoint)
		}
	}
	s.close()
	if s.opt.AutoExit && (err != nil || s.act.autoExited.Load()) {
		s.cleanupSelfUnmounted(err == nil)
	}
	return err
}

// Unmount unmounts the filesystem (non-lazily); serving then ends and Wait
// returns. Readers of .wcfs/debug/zhead are detached first (they would
// otherwise keep the mount busy). If the mount stays busy the error says so
// (EBUSY) and the server keeps serving.
func (s *Server) Unmount() error {
	if s.zhead != nil {
		s.zhead.detachAll()
	}
	var err error
	delay := 5 * time.Millisecond
	for try := 0; try < 5; try++ {
		// a reader that was just detached releases its file a bit later
		err = unix.Unmount(s.opt.Mountpoint, 0)
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(delay)
		delay *= 2
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", s.opt.Mountpoint, err)
	}
	return nil
}

// close stops background work and releases the storage.
func (s *Server) close() {
	s.cancel()
	if s.head != nil {
		s.head.iso.stop() // watch links
	}
	s.workers.Wait()
	s.uploads.Wait()
	if s.storer != nil {
		s.storer.Close()
	}
	if s.head != nil {
		s.head.zconn.Close()
	}
	if s.revs != nil {
		s.revs.closeAll()
	}
	if s.db != nil {
		s.db.Close()
	}
	if s.stor != nil {
		if s.watchq != nil {
			s.stor.DelWatch(s.watchq)
		}
		if err := s.stor.Close(); err != nil {
			log.Warningf("close storage: %s", err)
		}
	}
}

// gcLoop releases idle @<rev>/ views, and spare ones when there are too
// many (revViews.trim).
func (s *Server) gcLoop(ctx context.Context) {
	everyOr(ctx, max(s.opt.RevIdle/4, 100*time.Millisecond), s.revs.trim, func() bool {
		s.revs.gc(s.opt.RevIdle)
		return true
	})
}

// every calls f every period until ctx is done or f returns false.
func every(ctx context.Context, period time.Duration, f func() bool) {
	everyOr(ctx, period, nil, f)
}

// everyOr is every, also calling f whenever wake receives.
func everyOr(ctx context.Context, period time.Duration, wake <-chan struct{}, f func() bool) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wake:
		}
		if !f() {
			return
		}
	}
}

// detachedGrace bounds the wait for a mount detached after a failure to be
// released by its users.
const detachedGrace = time.Second

// maxBackground is the number of asynchronous requests (readahead) the
// kernel may have in flight (go-fuse default: 12).
const maxBackground = 64

// panicHandler logs a panic in a FUSE handler and fails the request.
func panicHandler(x any) fuse.Status {
	buf := make([]byte, 64<<10)
	buf = buf[:runtime.Stack(buf, false)]
	log.Errorf("panic in FUSE handler: %v\n%s", x, buf)
	return fuse.EIO
}

// glogWriter sends the output of a standard logger to glog: go-fuse's
// (INFO: its debug trace with -trace.fuse) and the standard library's
// (WARNING, spec 3; see RedirectStdLog).
type glogWriter struct {
	info bool
}

func (w glogWriter) Write(p []byte) (int, error) {
	if w.info {
		log.InfoDepth(3, string(p))
	} else {
		log.WarningDepth(3, string(p))
	}
	return len(p), nil
}

// RedirectStdLog sends the standard library logger's output to glog at
// WARNING level.
func RedirectStdLog() {
	stdlog.SetFlags(0)
	stdlog.SetOutput(glogWriter{})
}

// errBusy tells whether err is EBUSY.
func errBusy(err error) bool { return errors.Is(err, syscall.EBUSY) }
