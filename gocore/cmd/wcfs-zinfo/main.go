// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

// Command wcfs-zinfo shows what the WCFS data layer (gocore/zdata) reads in
// a ZODB database: the ZBigFiles reachable from the root mapping, or the
// ones given by oid, with their block size, size, blocks, holes, formats,
// the sha256 of their content and how fast their blocks load.
//
//	wcfs-zinfo [flags] ZURL [oid...]
//
// ZURL is a zurl (file://, zeo://, neo://, neos://, demo:) or a FileStorage
// path; the storage is opened read-only. Flags may come before or after the
// positional arguments:
//
//	--at TID     view the database as of TID (16 hex digits; default: head)
//	--blocks     also list every block (format, ZBlk oid, data length, sha256)
//	-j N         blocks loaded in parallel per file (default 4)
//	-v           show the storage driver's log (e.g. FileStorage index rebuild)
//
// The exit status is 0 when every file was read, 1 when some could not be
// (the error is reported and the other files are still shown), 2 on usage
// errors.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/zdata"
	"wendelin.dev/wcfs/gocore/zurl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed command line.
type options struct {
	zurl    zurl.ZURL
	at      zodb.Tid
	oids    []zodb.Oid
	blocks  bool
	jobs    int
	verbose bool
}

const usage = "usage: wcfs-zinfo [--at TID] [--blocks] [-j N] [-v] ZURL [oid...]"

// parseArgs parses flags interspersed with positional arguments.
func parseArgs(args []string, stderr io.Writer) (*options, error) {
	o := &options{jobs: 4}
	fs := flag.NewFlagSet("wcfs-zinfo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	at := fs.String("at", "", "view the database as of `TID` (16 hex digits; default: head)")
	fs.BoolVar(&o.blocks, "blocks", false, "list every block")
	fs.IntVar(&o.jobs, "j", o.jobs, "blocks loaded in parallel per file")
	fs.BoolVar(&o.verbose, "v", false, "show the storage driver's log")

	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) == 0 {
		return nil, fmt.Errorf("no ZURL given\n%s", usage)
	}
	z, err := zurl.Parse(pos[0])
	if err != nil {
		return nil, err
	}
	o.zurl = z
	if *at != "" {
		tid, err := zodb.ParseTid(*at)
		if err != nil {
			return nil, fmt.Errorf("--at: %w (want 16 hex digits)", err)
		}
		o.at = tid
	}
	if o.jobs < 1 {
		return nil, fmt.Errorf("-j %d: must be at least 1", o.jobs)
	}
	for _, s := range pos[1:] {
		v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("oid %q: not a hexadecimal oid", s)
		}
		o.oids = append(o.oids, zodb.Oid(v))
	}
	return o, nil
}

// run is the command; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "wcfs-zinfo: %s\n", err)
		return 2
	}
	if !o.verbose {
		log.SetOutput(io.Discard) // neo/go drivers log e.g. "index load: ... no such file"
		defer log.SetOutput(os.Stderr)
	}
	if err := info(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "wcfs-zinfo: %s\n", err)
		return 1
	}
	return 0
}

// fileInfo is what is shown about one ZBigFile.
type fileInfo struct {
	name    string // root key ("" when given by oid)
	oid     zodb.Oid
	blksize int64
	size    int64
	nblk    int64 // size / blksize
	holes   int64
	nfmt    map[zdata.BlkFormat]int64
	sha256  string
	elapsed time.Duration
	blocks  []blkLine // --blocks
	err     error
}

type blkLine struct {
	blk    int64
	info   zdata.BlkInfo
	datlen int
	sha256 string
}

func info(ctx context.Context, o *options, stdout, stderr io.Writer) (err error) {
	stor, err := zdata.OpenStorage(ctx, o.zurl)
	if err != nil {
		return err
	}
	defer stor.Close()
	db := zdata.NewDB(stor)
	defer db.Close()
	zc, err := zdata.OpenConn(ctx, db, o.at)
	if err != nil {
		return err
	}
	defer zc.Close()

	at := zc.At()
	fmt.Fprintf(stdout, "zurl  %s\n", o.zurl)
	fmt.Fprintf(stdout, "at    %s (%s)\n", at, at.Time().UTC().Format("2006-01-02 15:04:05.000000 MST"))

	targets, skipped, err := findFiles(ctx, zc, o.oids)
	if err != nil {
		return err
	}

	var files []*fileInfo
	nerr := 0
	for _, t := range targets {
		fi := readFile(ctx, zc, t.name, t.oid, o)
		if fi.err != nil {
			nerr++
			fmt.Fprintf(stderr, "wcfs-zinfo: %s\n", fi.err)
		}
		files = append(files, fi)
	}
	printFiles(stdout, files, o.blocks)
	switch {
	case skipped == 1:
		fmt.Fprintln(stdout, "(1 other root entry is not a ZBigFile)")
	case skipped > 1:
		fmt.Fprintf(stdout, "(%d other root entries are not ZBigFiles)\n", skipped)
	}
	if len(targets) == 0 {
		fmt.Fprintln(stdout, "no ZBigFile found")
	}
	if nerr > 0 {
		return fmt.Errorf("%d of %d files could not be read", nerr, len(targets))
	}
	return ctx.Err()
}

type target struct {
	name string
	oid  zodb.Oid
}

// findFiles returns the files to show: the given oids, or the ZBigFiles
// that are values of the root mapping (sorted by key), and how many root
// values are something else.
func findFiles(ctx context.Context, zc *zdata.ZConn, oids []zodb.Oid) (targets []target, skipped int, err error) {
	if len(oids) > 0 {
		for _, oid := range oids {
			targets = append(targets, target{oid: oid})
		}
		return targets, 0, nil
	}
	tctx := zc.Ctx(ctx)
	obj, err := zc.Get(tctx, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("root object @%s: %w", zc.At(), err)
	}
	root, ok := obj.(*zodb.Map)
	if !ok {
		return nil, 0, fmt.Errorf("root object @%s is %s, not a PersistentMapping", zc.At(), zodb.ClassOf(obj))
	}
	if err := root.PActivate(tctx); err != nil {
		return nil, 0, fmt.Errorf("root object @%s: %w", zc.At(), err)
	}
	defer root.PDeactivate()
	for k, v := range root.Iter() {
		key, ok := k.(string)
		if !ok {
			key = fmt.Sprint(k)
		}
		if f, ok := v.(*zdata.ZBigFile); ok {
			targets = append(targets, target{name: key, oid: f.POid()})
		} else {
			skipped++
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].name < targets[j].name })
	return targets, skipped, nil
}

// readFile reads every block of a file, in parallel (o.jobs), hashing the
// content in order.
func readFile(ctx context.Context, zc *zdata.ZConn, name string, oid zodb.Oid, o *options) *fileInfo {
	fi := &fileInfo{name: name, oid: oid, nfmt: map[zdata.BlkFormat]int64{}}
	f, err := zc.LoadZBigFile(ctx, oid)
	if err != nil {
		fi.err = err
		return fi
	}
	tctx := zc.Ctx(ctx)
	fi.blksize, _, err = f.Params(tctx)
	if err == nil {
		fi.size, _, err = f.Size(tctx)
	}
	if err != nil {
		fi.err = err
		return fi
	}
	fi.nblk = fi.size / fi.blksize

	h := sha256.New()
	start := time.Now()
	blks := make([]zdata.BlkData, o.jobs)
	infos := make([]zdata.BlkInfo, o.jobs)
	errs := make([]error, o.jobs)
	for base := int64(0); base < fi.nblk; base += int64(o.jobs) {
		n := int(min(int64(o.jobs), fi.nblk-base))
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				blks[i], infos[i], errs[i] = f.LoadBlkShared(tctx, base+int64(i))
			}()
		}
		wg.Wait()
		for i := 0; i < n; i++ {
			if errs[i] != nil {
				for j := i; j < n; j++ {
					blks[j].Release()
				}
				fi.err = errs[i]
				return fi
			}
			data := blks[i].Data
			h.Write(data)
			fi.nfmt[infos[i].Format]++
			if infos[i].Format == zdata.Hole {
				fi.holes++
			}
			if o.blocks {
				bh := sha256.Sum256(data)
				datlen := len(data)
				for datlen > 0 && data[datlen-1] == 0 {
					datlen--
				}
				fi.blocks = append(fi.blocks, blkLine{base + int64(i), infos[i], datlen, hex.EncodeToString(bh[:])})
			}
			blks[i].Release()
		}
	}
	fi.elapsed = time.Since(start)
	fi.sha256 = hex.EncodeToString(h.Sum(nil))
	return fi
}

func printFiles(w io.Writer, files []*fileInfo, blocks bool) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\nZBigFile\tname\tblksize\tsize\tblocks\tholes\tZBlk0\tZBlk1\tsha256\tload")
	var total int64
	var elapsed time.Duration
	for _, fi := range files {
		name := fi.name
		if name == "" {
			name = "-"
		}
		if fi.err != nil {
			fmt.Fprintf(tw, "%s\t%s\terror (see above)\n", fi.oid, name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", fi.oid, name, fi.blksize, fi.size,
			fi.nblk, fi.holes, fi.nfmt[zdata.FormatZBlk0], fi.nfmt[zdata.FormatZBlk1], fi.sha256,
			rate(fi.size, fi.elapsed))
		total += fi.size
		elapsed += fi.elapsed
	}
	tw.Flush()
	if len(files) > 1 {
		fmt.Fprintf(w, "total: %d files, %d bytes, %s\n", len(files), total, rate(total, elapsed))
	}
	if !blocks {
		return
	}
	for _, fi := range files {
		if fi.err != nil || len(fi.blocks) == 0 {
			continue
		}
		name := ""
		if fi.name != "" {
			name = " (" + fi.name + ")"
		}
		fmt.Fprintf(w, "\nblocks of %s%s:\n", fi.oid, name)
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "blk\tformat\tZBlk\tdatalen\trevmax\tsha256")
		for _, b := range fi.blocks {
			zblk := "-"
			if b.info.Format != zdata.Hole {
				zblk = b.info.ZBlk.String()
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", b.blk, b.info.Format, zblk, b.datlen, b.info.RevMax, b.sha256)
		}
		tw.Flush()
	}
}

// rate formats a load throughput.
func rate(n int64, d time.Duration) string {
	if d <= 0 || n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MB/s", float64(n)/d.Seconds()/1e6)
}
