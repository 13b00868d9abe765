// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

// Command wcfs is the WCFS filesystem server: it mounts at MOUNTPOINT a
// filesystem that shows the ZBigFiles of the ZODB database at ZURL, as of
// the latest commit (head/) and as of any revision (@<rev>/), and follows
// the database as it changes. See package wendelin.dev/wcfs/gocore/server.
//
//	wcfs [options] ZURL MOUNTPOINT
//
// Logging uses glog: its flags (-logtostderr, -alsologtostderr, -v,
// -vmodule, -log_dir, -stderrthreshold, -log_backtrace_at) are accepted.
// Logs go to stderr by default (-logtostderr is on): a server never litters
// the temporary directory with log files. -log_dir=DIR (without
// -logtostderr) writes glog's files into DIR instead, and -logtostderr=false
// into the temporary directory, as glog does.
//
// ZURL is parsed by package zurl: a relative FileStorage path (a plain
// path, file://data.fs) is resolved against the server's working directory;
// the resolved zurl is the mount source and the content of .wcfs/zurl.
//
// Readiness: when $NOTIFY_SOCKET is set, the server speaks the sd_notify
// protocol on it: STATUS=opening storage ... while it opens the storage,
// READY=1 (with STATUS= and MAINPID=) once the mount serves, or
// STATUS=<error> (and ERRNO=<n> when there is one) right before exiting
// non-zero on a startup failure, a bad option or argument included;
// STOPPING=1 when it stops.
//
// Descriptors: the server closes, first thing, every descriptor it
// inherited beyond stdin, stdout and stderr (a starter's listening socket,
// pipe or file must not stay open in a server that outlives it, as the
// reference's close_fds spawn ensures).
//
// -mntpt.create: the server creates MOUNTPOINT (under its start lock,
// MOUNTPOINT.lock) and removes it when it ends, however it ends; `python -m
// wcfs serve` runs the server so.
//
// Storage outages: reads needing a network storage that does not answer
// within -zstor.timeout fail with EIO and the storage is then down (as when
// its watch fails): cached data is still served, .wcfs/zstor and STATUS=
// say so, and once the storage is back the server unmounts and exits 1
// with a message naming the storage, so that a new server follows it.
//
// Signals: SIGTERM and SIGINT unmount (non-lazily) and exit 0; if the mount
// is busy the server logs who uses it and keeps serving. SIGHUP is ignored.
// SIGQUIT dumps all goroutines (Go runtime). An unmount from outside
// (fusermount -u) makes the server exit 0.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	log "github.com/golang/glog"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/server"
	"wendelin.dev/wcfs/gocore/zurl"
)

func usage() {
	w := flag.CommandLine.Output()
	fmt.Fprintf(w, "Usage: %s [OPTIONS] zurl mntpt\n\n", os.Args[0])
	fmt.Fprintf(w, "Serve the ZBigFiles of the ZODB database at zurl as files under mntpt.\n\nOptions:\n")
	flag.PrintDefaults()
}

// defaultGOGC is the server's garbage collection target unless $GOGC or
// $GOMEMLIMIT says otherwise: the heap may grow by half of what is live
// between collections, not by all of it (Go's 100). The server's live heap
// is mostly the block history of the last minute of commits; with 100 a run
// of big commits (20 of 100,000 changed blocks each, back to back) peaked at
// 273-325 MiB of private memory, with 50 at 241 MiB (BENCHMARKS.md, "Big
// commits"). The read path allocates little, so collecting more often costs
// little.
const defaultGOGC = 50

func main() {
	closeInheritedFDs()
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	flag.Usage = usage
	flag.CommandLine.Init(os.Args[0], flag.ContinueOnError)
	var opt server.Options
	flag.BoolVar(&opt.Debug, "debug", false, "enable debugging features (.wcfs/debug/zhead)")
	flag.BoolVar(&opt.TraceFUSE, "trace.fuse", false, "trace every FUSE message (log at INFO)")
	flag.BoolVar(&opt.AutoExit, "autoexit", false, "automatically stop service when there is no client activity")
	flag.DurationVar(&opt.AutoExitGrace, "autoexit.grace", server.DefaultAutoExitGrace, "with -autoexit: how long without client activity before stopping")
	flag.DurationVar(&opt.PinTimeout, "pintimeout", server.DefaultPinTimeout, "clients are killed if they do not handle a pin notification in this time")
	flag.DurationVar(&opt.RevIdle, "revgc.idle", server.DefaultRevIdle, "release @<rev>/ views nobody used for this long")
	flag.DurationVar(&opt.OpenTimeout, "open.timeout", server.DefaultOpenTimeout, "give up opening the storage at startup after this long")
	flag.DurationVar(&opt.ZStorTimeout, "zstor.timeout", server.DefaultZStorTimeout, "a read needing a network storage fails with EIO when the storage does not answer within this time (the storage is then down: see .wcfs/zstor)")
	flag.Var((*byteSize)(&opt.Prefetch), "prefetch", "load and cache this much (e.g. 16M) ahead of a sequential reader of big blocks; 0: off, a read loads only the blocks it touches (default; see docs/server.md)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file")
	mkmntpt := flag.Bool("mntpt.create", false, "create mntpt (under mntpt.lock) and remove it when the server ends")
	logToStderrByDefault()
	if err := flag.CommandLine.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		usageFailed(err) // the flag package printed the usage
	}
	logDirMeansFiles()
	switch n := flag.NArg(); {
	case n < 2:
		usageFailed(fmt.Errorf("want a zurl and a mountpoint after the options, got %q", flag.Args()))
	case n > 2:
		usageFailed(fmt.Errorf("unexpected argument %q: want one zurl and one mountpoint after the options", flag.Arg(0)))
	}
	z, err := zurl.Parse(flag.Arg(0))
	if err != nil {
		os.Exit(startFailed(err)) // as the storage's errors (exit 1)
	}
	opt.ZURL = z
	if opt.Mountpoint, err = filepath.Abs(flag.Arg(1)); err != nil {
		usageFailed(fmt.Errorf("mountpoint %q: %w", flag.Arg(1), err))
	}
	opt.Status = func(state string) { notify("STATUS=" + oneLine(state)) }
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "wcfs: -cpuprofile: %s\n", err)
			os.Exit(2)
		}
	}
	code := run(opt, *mkmntpt)
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	log.Flush()
	os.Exit(code)
}

func run(opt server.Options, mkmntpt bool) int {
	race := ""
	if raceEnabled {
		race = "-race"
	}
	log.Infof("start %q %q", opt.Mountpoint, opt.ZURL.StorageURL())
	log.Infof("(built with %s%s)", runtime.Version(), race)
	server.RedirectStdLog()

	// SIGTERM/SIGINT before the mount serves: give up starting
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startDone := make(chan struct{})
	go func() {
		select {
		case sig := <-sigc:
			log.Warningf("%s during startup: giving up", sig)
			cancel()
		case <-startDone:
		}
	}()

	var own *server.OwnMountpoint
	var s *server.Server
	err := func() (err error) {
		if mkmntpt {
			octx, cancel := context.WithTimeout(ctx, cmp.Or(opt.OpenTimeout, server.DefaultOpenTimeout))
			defer cancel()
			if own, err = server.CreateMountpoint(octx, opt.Mountpoint); err != nil {
				return err
			}
		}
		notify("STATUS=opening storage " + oneLine(opt.ZURL.StorageURL()))
		if s, err = server.Open(ctx, opt); err != nil {
			return err
		}
		return s.Mount()
	}()
	close(startDone)
	if own != nil {
		defer own.Remove() // after the end, or now on a failed start
	}
	if err != nil {
		return startFailed(err)
	}
	if own != nil {
		own.Serving()
	}

	zurlStr := opt.ZURL.StorageURL()
	notify(fmt.Sprintf("READY=1\nSTATUS=serving %s on %s\nMAINPID=%d", oneLine(zurlStr), oneLine(opt.Mountpoint), os.Getpid()))
	log.Infof("serving %s on %s", zurlStr, opt.Mountpoint)

	go func() {
		for sig := range sigc {
			log.Infof("%s: unmounting %s", sig, opt.Mountpoint)
			if err := s.Unmount(); err != nil {
				log.Warningf("%s: %s: keep serving%s", sig, err, s.BusyReport())
			}
		}
	}()

	err = s.Wait()
	notify("STOPPING=1")
	log.Infof("stop %q %q", opt.Mountpoint, zurlStr)
	if err != nil {
		msg := fmt.Sprintf("wcfs: %s", err)
		log.Warning(msg)
		report(msg)
		notify("STATUS=" + oneLine(msg))
		return 1
	}
	return 0
}

// startFailed reports a startup failure (stderr, log, sd_notify) and
// returns the exit code.
func startFailed(err error) int {
	msg := fmt.Sprintf("wcfs: %s", err)
	log.Warning(msg)
	report(msg)
	state := "STATUS=" + oneLine(msg)
	var e syscall.Errno
	if errors.As(err, &e) {
		state += fmt.Sprintf("\nERRNO=%d", int(e))
	}
	notify(state)
	if errors.Is(err, server.ErrUsage) {
		return 2
	}
	return 1
}

// usageFailed reports a bad option or argument (stderr with the usage line,
// sd_notify) and exits 2.
func usageFailed(err error) {
	msg := fmt.Sprintf("wcfs: %s", err)
	fmt.Fprintf(os.Stderr, "%s\nUsage: %s [OPTIONS] zurl mntpt\n", msg, os.Args[0])
	notify("STATUS=" + oneLine(msg))
	os.Exit(2)
}

// closeInheritedFDs closes the descriptors beyond stdin, stdout and stderr
// that this process inherited from its starter. Every descriptor the Go
// runtime and this program open is close-on-exec: one without the flag was
// inherited.
func closeInheritedFDs() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
}

// report writes msg to stderr unless the log (which has it) goes there
// already: once in a terminal or a server log file, never twice.
func report(msg string) {
	for _, name := range []string{"logtostderr", "alsologtostderr"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() == "true" {
			return
		}
	}
	fmt.Fprintln(os.Stderr, msg)
}

// notify sends state to $NOTIFY_SOCKET if set (sd_notify protocol).
func notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil && log.V(1) {
		log.Infof("sd_notify %q: %s", state, err) // e.g. the spawner is gone
	}
}

// oneLine makes s fit in one sd_notify assignment.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

// logToStderrByDefault makes -logtostderr default to true (glog's default is
// files in the temporary directory).
func logToStderrByDefault() {
	if f := flag.Lookup("logtostderr"); f != nil {
		f.Value.Set("true")
		f.DefValue = "true"
	}
}

// logDirMeansFiles turns -logtostderr off when -log_dir is given without
// -logtostderr: whoever names a log directory wants the files there.
func logDirMeansFiles() {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["log_dir"] && !set["logtostderr"] {
		flag.Set("logtostderr", "false")
	}
}
