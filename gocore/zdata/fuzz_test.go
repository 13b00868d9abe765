// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// Fuzz targets for reading files made of damaged records, through the whole
// stack, and for ZBlk1 chunk tables. (The record decoder itself is fuzzed
// against og-rek in gocore/internal/zpickle.) Seed corpora are in
// testdata/fuzz/<Target>/; they are records of the genuine ZODB fixtures
// (regenerate with ZDATA_GEN_SEEDS=1, see TestGenFuzzSeeds) plus
// hand-written cases.
//
//	go test -run=NONE -fuzz=FuzzObjectState -fuzztime=1m ./gocore/zdata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	pickle "github.com/kisielk/og-rek"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/zpickle"
)

// FuzzObjectState replaces the state of one object of a small valid
// database (baseRecs, oid = which%8) with arbitrary bytes, keeping its class
// pickle, and reads the file through the whole stack: neo/go's Connection
// and BTree decoding, and this package. Nothing may panic; what succeeds
// must be consistent.
func FuzzObjectState(f *testing.F) {
	for oid, rec := range baseRecs() {
		f.Add(uint8(oid), rec[classLen(rec):])
	}
	f.Add(uint8(2), pk("x", pickle.Tuple{pickle.Tuple{ref(2, zpickle.ClassLOBTree)}, ref(2, zpickle.ClassLOBTree)})[len(pk("x", nil)):])
	f.Fuzz(func(t *testing.T, which uint8, state []byte) {
		recs := baseRecs()
		oid := zodb.Oid(which % 8)
		n := classLen(recs[oid])
		recs[oid] = append(recs[oid][:n:n], state...)
		readAll(t, recs)
	})
}

// readAll opens a database made of recs and reads ZBigFile 1 completely.
func readAll(t *testing.T, recs map[zodb.Oid][]byte) {
	db, zurl := newMemDB(t)
	db.commit(1, recs)
	zc := openMem(t, zurl)
	ctx := context.Background()
	f, err := zc.LoadZBigFile(ctx, 1)
	if err != nil {
		return
	}
	fctx := zc.Ctx(ctx)
	blksize, _, err := f.Params(fctx)
	if err != nil {
		t.Fatalf("Params after a successful load: %v", err)
	}
	size, _, err := f.Size(fctx)
	if err == nil && (size < 0 || size%blksize != 0) {
		t.Fatalf("size %d, blksize %d", size, blksize)
	}
	if blksize > 1<<20 {
		return // valid, but too much memory per iteration
	}
	for blk := int64(0); blk < 3; blk++ {
		data, info, err := f.LoadBlk(fctx, blk)
		if err != nil {
			continue
		}
		if int64(len(data)) != blksize {
			t.Fatalf("blk %d: %d bytes, blksize %d", blk, len(data), blksize)
		}
		if (info.Format == Hole) != (info.ZBlk == 0 && info.ZRev == 0) {
			t.Fatalf("blk %d: %+v", blk, info)
		}
		shared, _, err := f.LoadBlkShared(fctx, blk)
		if err != nil || !bytes.Equal(shared.Data, data) {
			t.Fatalf("blk %d: LoadBlkShared differs from LoadBlk: %v", blk, err)
		}
		shared.Release()
	}
}

// FuzzZBlk1Assembly builds a ZBlk1 from an arbitrary chunk table and checks
// the result against a straightforward model of spec 4.2. table is read as
// entries of 3 bytes: offset (uint16 LE) and chunk length (uint8); fanout
// splits the entries over buckets of a two-level IOBTree (0: one inline
// bucket).
func FuzzZBlk1Assembly(f *testing.F) {
	f.Add(uint16(64), uint8(0), []byte{0, 0, 4, 8, 0, 2})
	f.Add(uint16(64), uint8(2), []byte{0, 0, 16, 16, 0, 16, 32, 0, 16, 48, 0, 16})
	f.Add(uint16(16), uint8(1), []byte{0, 0, 4, 2, 0, 4}) // overlap
	f.Add(uint16(16), uint8(0), []byte{0, 0, 4, 0, 0, 4}) // duplicate
	f.Add(uint16(16), uint8(3), []byte{12, 0, 5})         // overrun
	f.Add(uint16(16), uint8(0), []byte{16, 0, 0})         // empty chunk at blksize
	f.Add(uint16(4096), uint8(4), []byte{0, 16, 200, 0, 0, 10, 0, 1, 0})
	f.Fuzz(func(t *testing.T, blksize uint16, fanout uint8, table []byte) {
		if blksize == 0 || len(table) > 3*64 {
			return
		}
		type ent struct{ off, n int }
		var ents []ent
		for i := 0; i+3 <= len(table); i += 3 {
			ents = append(ents, ent{int(binary.LittleEndian.Uint16(table[i:])), int(table[i+2])})
		}
		// BTrees keep keys sorted; a duplicate offset stays (and is an error)
		sort.SliceStable(ents, func(a, b int) bool { return ents[a].off < ents[b].off })

		recs := baseRecs()
		recs[1] = zfile(int64(blksize), 2)
		kv := func(ents []ent, base int) []any {
			var kv []any
			for i, e := range ents {
				oid := zodb.Oid(1000 + base + i)
				recs[oid] = pk(ClassZData, pickle.Bytes(bytes.Repeat([]byte{byte(base + i + 1)}, e.n)))
				kv = append(kv, int64(e.off), ref(oid, ClassZData))
			}
			return kv
		}
		if fanout == 0 {
			recs[5] = pk(zpickle.ClassIOBTree, inlineTree(kv(ents, 0)...))
		} else {
			var kids pickle.Tuple
			for b, i := 0, 0; i < len(ents); b, i = b+1, i+int(fanout) {
				part := ents[i:min(i+int(fanout), len(ents))]
				boid := zodb.Oid(100 + b)
				recs[boid] = pk(zpickle.ClassIOBucket, bucketState(kv(part, i)...))
				if b > 0 {
					kids = append(kids, int64(part[0].off))
				}
				kids = append(kids, ref(boid, zpickle.ClassIOBucket))
			}
			if len(kids) == 0 {
				recs[5] = pk(zpickle.ClassIOBTree, pickle.None{})
			} else {
				recs[5] = pk(zpickle.ClassIOBTree, pickle.Tuple{kids, kids[0]})
			}
		}

		// model
		want := make([]byte, blksize)
		wantErr := false
		sorted := make([]int, len(ents))
		for i := range sorted {
			sorted[i] = i
		}
		sort.SliceStable(sorted, func(a, b int) bool { return ents[sorted[a]].off < ents[sorted[b]].off })
		for k, i := range sorted {
			e := ents[i]
			end := e.off + e.n
			if k+1 < len(sorted) && (end > ents[sorted[k+1]].off || e.off == ents[sorted[k+1]].off) || end > int(blksize) {
				wantErr = true // overlap, duplicate offset, overrun
				break
			}
			copy(want[e.off:end], bytes.Repeat([]byte{byte(i + 1)}, e.n))
		}

		db, zurl := newMemDB(t)
		db.commit(1, recs)
		zc := openMem(t, zurl)
		ctx := context.Background()
		zf, err := zc.LoadZBigFile(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		data, info, err := zf.LoadBlk(zc.Ctx(ctx), 1)
		if wantErr {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("chunks %v: want a malformed-data error, got %v", ents, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("chunks %v: %v", ents, err)
		}
		if info.Format != FormatZBlk1 || !bytes.Equal(data, want) {
			t.Fatalf("chunks %v:\nhave %x\nwant %x", ents, data, want)
		}
	})
}

// TestGenFuzzSeeds writes the records of the genuine ZODB fixtures as seed
// corpora (run with ZDATA_GEN_SEEDS=1; the files are committed).
func TestGenFuzzSeeds(t *testing.T) {
	if os.Getenv("ZDATA_GEN_SEEDS") == "" {
		t.Skip("set ZDATA_GEN_SEEDS=1 to regenerate testdata/fuzz seeds from the fixtures")
	}
	dir := fixtureDir(t)
	files := []string{filepath.Join(dir, "small.fs")}
	up, _ := filepath.Glob(filepath.Join(dir, "upstream", "*.fs"))
	files = append(files, up...)
	seen := map[string]bool{}
	for _, path := range files {
		stor, _ := openTestDB(t, path)
		testdb.EachRecord(context.Background(), t, stor, func(_ *zodb.TxnInfo, d *zodb.DataInfo) {
			if d == nil || d.Data == nil || len(d.Data) > 8192 {
				return
			}
			rec := d.Data
			class, err := zpickle.Class(rec)
			key := class + fmt.Sprint(len(rec)/512)
			if err != nil || seen[key] {
				return
			}
			seen[key] = true
			for oid, c := range map[uint8]string{1: ClassZBigFile, 2: zpickle.ClassLOBTree, 3: ClassZBlk0, 4: ClassZBlk1, 5: zpickle.ClassIOBTree, 6: ClassZData} {
				if c == class {
					writeSeed(t, "FuzzObjectState", oid, rec[classLen(rec):])
				}
			}
		})
	}
}

// classLen returns the length of the class pickle of a record as ZODB and
// og-rek write it for classes without __getnewargs__: [PROTO n] GLOBAL
// module\nname\n [memo put] STOP.
func classLen(rec []byte) int {
	i := 0
	if len(rec) > 2 && rec[0] == 0x80 {
		i = 2
	}
	for k := 0; k < 2; k++ {
		i += bytes.IndexByte(rec[i:], '\n') + 1
	}
	switch rec[i] {
	case 'q':
		i += 2
	case 'r':
		i += 5
	case 0x94:
		i++
	}
	if rec[i] != '.' {
		panic(fmt.Sprintf("classLen: unexpected class pickle %q", rec))
	}
	return i + 1
}

// writeSeed writes one corpus entry in the format of `go test -fuzz`.
func writeSeed(t *testing.T, target string, args ...any) {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch a := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(a)))
		case uint8:
			fmt.Fprintf(&b, "byte(%s)\n", strconv.QuoteRune(rune(a)))
		default:
			t.Fatalf("writeSeed: %T", a)
		}
	}
	h := sha256.Sum256(b.Bytes())
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("fixture-%x", h[:8])), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
