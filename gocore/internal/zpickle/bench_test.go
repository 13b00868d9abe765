// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zpickle

// Decoding speed of typical records, as Python 3 ZODB writes them, side by
// side with og-rek (the general pickle decoder neo/go uses) decoding the
// same records to its values (class and state, persistent references
// resolved as the fuzz oracle does), without interpreting them:
//
//	go test -run=NONE -bench=. ./gocore/internal/zpickle

import (
	"bytes"
	"testing"

	pickle "github.com/kisielk/og-rek"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// benchRecords returns typical records: a blktab bucket (60 blocks, ZBlk0
// and ZBlk1), a blktab interior node (500 buckets), a ZBlk1 chunk-table
// bucket (60 chunks), a ZData chunk of 4 KiB, a ZBigFile.
func benchRecords() map[string][]byte {
	d := dialects[3] // py3-proto3
	var blktab, chunks, kids []any
	for i := int64(0); i < 60; i++ {
		class := ClassZBlk0
		if i%3 == 0 {
			class = ClassZBlk1
		}
		blktab = append(blktab, 1000+i, ref(zodb.Oid(5000+i), class))
		chunks = append(chunks, i*4096, ref(zodb.Oid(9000+i), ClassZData))
	}
	for i := int64(0); i < 500; i++ {
		if i > 0 {
			kids = append(kids, i*60)
		}
		kids = append(kids, ref(zodb.Oid(100+i), ClassLOBucket))
	}
	return map[string][]byte{
		"LOBucket": d.pickle(ClassLOBucket, bucketState(ref(99, ClassLOBucket), blktab...)),
		"LOBTree":  d.pickle(ClassLOBTree, treeState(ref(100, ClassLOBucket), kids...)),
		"IOBucket": d.pickle(ClassIOBucket, bucketState(ref(98, ClassIOBucket), chunks...)),
		"ZData":    d.pickle(ClassZData, pyBytes(bytes.Repeat([]byte{1}, 4096))),
		"ZBigFile": d.pickle(ClassZBigFile, pyTuple{int64(2 << 20), ref(2, ClassLOBTree)}),
	}
}

func BenchmarkDecode(b *testing.B) {
	recs := benchRecords()
	node := func(f Family) func(rec []byte) error {
		return func(rec []byte) error { _, err := DecodeNode(rec, f); return err }
	}
	for _, bm := range []struct {
		name string
		dec  func(rec []byte) error
	}{
		{"LOBucket", node(LO)},
		{"LOBTree", node(LO)},
		{"IOBucket", node(IO)},
		{"ZData", func(rec []byte) error { _, _, err := DecodeBytes(rec); return err }},
		{"ZBigFile", func(rec []byte) error { _, _, err := DecodeZBigFile(rec); return err }},
	} {
		rec := recs[bm.name]
		run := func(name string, dec func(rec []byte) error) {
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(rec)))
				for b.Loop() {
					if err := dec(rec); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		run(bm.name+"/zpickle", bm.dec)
		run(bm.name+"/og-rek", ogrekDecode)
	}
}

// ogrekDecode decodes both pickles of rec with og-rek.
func ogrekDecode(rec []byte) error {
	d := pickle.NewDecoderWithConfig(bytes.NewReader(rec), &pickle.DecoderConfig{
		StrictUnicode:  true,
		PersistentLoad: oracleRef,
	})
	if _, err := d.Decode(); err != nil {
		return err
	}
	_, err := d.Decode()
	return err
}
