// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zpickle

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// layout is one state layout of spec 4.1 and what it decodes to.
type layout struct {
	name  string
	class string
	state any
	want  any // Node (decoded for the family of class), []byte, Ref or ZBigFileState
}

func layouts() []layout {
	none := zodb.InvalidOid
	big := int64(1) << 40
	bytes300 := pyBytes(strings.Repeat("x\x00", 150))
	var many []any // a bucket with more memo entries than BINPUT numbers
	var manyEntries []Entry
	for i := int64(0); i < 200; i++ {
		many = append(many, i*3, ref(zodb.Oid(1000+i), ClassZBlk0))
		manyEntries = append(manyEntries, Entry{i * 3, zodb.Oid(1000 + i)})
	}
	return []layout{
		{"ZBigFile", ClassZBigFile, pyTuple{int64(2 << 20), ref(2, ClassLOBTree)},
			ZBigFileState{2 << 20, Ref{2, ClassLOBTree}}},
		{"ZBigFile bare blktab oid", ClassZBigFile, pyTuple{int64(4096), ref(2, "")},
			ZBigFileState{4096, Ref{2, ""}}},
		{"ZBlk0", ClassZBlk0, pyBytes("abc\x00d"), []byte("abc\x00d")},
		{"ZBlk0 empty", ClassZBlk0, pyBytes(""), []byte("")},
		{"ZBlk legacy", ClassZBlk, pyBytes("abc"), []byte("abc")},
		{"ZData 300 bytes", ClassZData, bytes300, []byte(bytes300)},
		{"ZData py2 str", ClassZData, pyStr("py2"), []byte("py2")},
		{"ZBlk1", ClassZBlk1, ref(5, ClassIOBTree), Ref{5, ClassIOBTree}},

		{"empty tree", ClassLOBTree, pyNone{},
			Node{Kind: Tree, FirstBucket: none, Next: none}},
		{"inline bucket", ClassLOBTree,
			pyTuple{pyTuple{bucketState(nil, int64(0), ref(3, ClassZBlk0), int64(1), ref(4, ClassZBlk1), big, ref(5, ClassZBlk0))}},
			Node{Kind: Tree, Inline: true, FirstBucket: none, Next: none, Entries: []Entry{
				{0, 3}, {1, 4}, {big, 5}}}},
		{"inline empty bucket", ClassLOBTree, pyTuple{pyTuple{bucketState(nil)}},
			Node{Kind: Tree, Inline: true, FirstBucket: none, Next: none, Entries: []Entry{}}},
		{"tree of buckets", ClassLOBTree,
			treeState(ref(10, ClassLOBucket), ref(10, ClassLOBucket), int64(100), ref(11, ClassLOBucket), big, ref(12, ClassLOBucket)),
			Node{Kind: Tree, Keys: []int64{0, 100, big}, Kids: []zodb.Oid{10, 11, 12}, KidKind: Bucket, FirstBucket: 10, Next: none}},
		{"tree of trees", ClassLOBTree,
			treeState(ref(20, ClassLOBucket), ref(13, ClassLOBTree), int64(-5), ref(14, ClassLOBTree)),
			Node{Kind: Tree, Keys: []int64{0, -5}, Kids: []zodb.Oid{13, 14}, KidKind: Tree, FirstBucket: 20, Next: none}},
		{"tree of kids without class", ClassLOBTree,
			treeState(ref(20, ""), ref(13, ClassLOBTree), int64(7), ref(14, "")),
			Node{Kind: Tree, Keys: []int64{0, 7}, Kids: []zodb.Oid{13, 14}, FirstBucket: 20, Next: none}},
		{"bucket", ClassLOBucket, bucketState(nil, int64(-1), ref(3, ClassZBlk), big, ref(4, ClassZBlk1)),
			Node{Kind: Bucket, FirstBucket: none, Next: none, Entries: []Entry{{-1, 3}, {big, 4}}}},
		{"bucket with next", ClassLOBucket, bucketState(ref(11, ClassLOBucket), int64(5), ref(3, ClassZBlk0)),
			Node{Kind: Bucket, FirstBucket: none, Next: 11, Entries: []Entry{{5, 3}}}},
		{"bucket of 200", ClassLOBucket, bucketState(nil, many...),
			Node{Kind: Bucket, FirstBucket: none, Next: none, Entries: manyEntries}},
		{"IO inline", ClassIOBTree,
			pyTuple{pyTuple{bucketState(nil, int64(0), ref(6, ClassZData), int64(1<<31-1), ref(7, ClassZData))}},
			Node{Kind: Tree, Inline: true, FirstBucket: none, Next: none, Entries: []Entry{{0, 6}, {1<<31 - 1, 7}}}},
		{"IO tree", ClassIOBTree, treeState(ref(8, ClassIOBucket), ref(8, ClassIOBucket), int64(4096), ref(9, ClassIOBucket)),
			Node{Kind: Tree, Keys: []int64{0, 4096}, Kids: []zodb.Oid{8, 9}, KidKind: Bucket, FirstBucket: 8, Next: none}},
		{"IO bucket with next", ClassIOBucket, bucketState(ref(9, ClassIOBucket), int64(-4096), ref(6, ClassZData)),
			Node{Kind: Bucket, FirstBucket: none, Next: 9, Entries: []Entry{{-4096, 6}}}},
	}
}

// TestLayouts decodes every layout written in the dialect of every Python
// pickler, and checks it against og-rek.
func TestLayouts(t *testing.T) {
	for _, d := range dialects {
		for _, c := range layouts() {
			t.Run(d.name+"/"+c.name, func(t *testing.T) {
				rec := d.pickle(c.class, c.state)
				var got any
				var err error
				switch c.want.(type) {
				case ZBigFileState:
					_, got, err = DecodeZBigFile(rec)
				case []byte:
					_, got, err = DecodeBytes(rec)
				case Ref:
					_, got, err = DecodeRef(rec)
				case Node:
					f := LO
					if strings.HasPrefix(c.class, "BTrees.IOBTree.") {
						f = IO
					}
					got, err = DecodeNode(rec, f)
				}
				if err != nil {
					t.Fatalf("%q: %v", rec, err)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Fatalf("%q:\ngot  %+v\nwant %+v", rec, got, c.want)
				}
				if class, err := Class(rec); err != nil || class != c.class {
					t.Fatalf("Class: %q %v", class, err)
				}
				checkRecord(t, rec)
			})
		}
	}
}

// TestClassForms: the class of a record as ZODB writes it for classes with
// __getnewargs__ ((class, args)) and as old ZODBs wrote it (((module, name), args)).
func TestClassForms(t *testing.T) {
	for _, d := range dialects {
		for _, rec := range [][]byte{
			d.pickle2(pyTuple{pyClass(ClassZBlk0), pyNone{}}, pyBytes("x")),
			d.pickle2(pyTuple{pyTuple{pyStr("wendelin.bigfile.file_zodb"), pyStr("ZBlk0")}, pyNone{}}, pyBytes("x")),
			d.pickle2(pyTuple{pyTuple{pyUni("wendelin.bigfile.file_zodb"), pyUni("ZBlk0")}, pyTuple{}}, pyBytes("x")),
		} {
			class, data, err := DecodeBytes(rec)
			if err != nil || class != ClassZBlk0 || string(data) != "x" {
				t.Errorf("%s: %q: %q %q %v", d.name, rec, class, data, err)
			}
			checkRecord(t, rec)
		}
	}
}

// pickle2 writes a record with any class description.
func (d dialect) pickle2(class, state any) []byte {
	p := &pickler{d: d, memo: map[string]int{}, next: d.memo0}
	p.dump(class)
	p.dump(state)
	return p.buf.Bytes()
}

// TestErrors checks that bad records and states give errors that say what is wrong.
func TestErrors(t *testing.T) {
	d := dialects[3] // py3-proto3
	lob := func(state any) []byte { return d.pickle(ClassLOBucket, state) }
	lot := func(state any) []byte { return d.pickle(ClassLOBTree, state) }
	zblk0 := d.pickle(ClassZBlk0, pyBytes("abc"))
	m := getMachine(zblk0)
	m.run()
	cls := zblk0[:m.pos] // class pickle of ZBlk0
	m.release()
	r1 := ref(1, ClassZBlk0)
	for _, tc := range []struct {
		rec  []byte
		fam  Family // DecodeNode; 0: DecodeBytes, DecodeRef, DecodeZBigFile by class
		want string
	}{
		// pickles
		{[]byte(""), LO, "class pickle: offset 0: truncated: no STOP"},
		{[]byte("\x80\x03\xffgarbage"), LO, "class pickle: offset 2: unsupported opcode 0xff"},
		{[]byte("}."), LO, "class pickle: offset 0: unsupported opcode 0x7d"},
		{[]byte("K\x01."), LO, "class pickle: expected class; got int"},
		{[]byte("K\x01K\x02\x87."), LO, "class pickle: offset 4: TUPLE3 of too few values"},
		{[]byte("(K\x01K\x02\x86."), LO, "class pickle: offset 6: STOP with 2 values on the stack"},
		{[]byte("K\x01K\x02K\x03\x87."), LO, "class pickle: expected class or (class, args); got tuple[3]"},
		{append(clone(cls), "\x80\x03C\x03abcq\x05."...), 0, "ZBlk0 state pickle: offset 46: memo index 5 out of sequence"},
		{append(clone(cls), "\x80\x03h\x07."...), 0, "memo entry 7 not set"},
		{append(clone(cls), "\x80\x03(q\x01."...), 0, "memo store of nothing"},
		{append(clone(cls), "\x80\x03\x8a\x09123456789."...), 0, "LONG1 truncated or beyond int64"},
		{append(clone(cls), "I99999999999999999999\n."...), 0, `integer "99999999999999999999": not an int64`},
		{append(clone(cls), "L12\n."...), 0, `LONG "12" does not end with L`},
		{append(clone(cls), "C\x07abcdefgQ."...), 0, "persistent reference: oid must be 8 bytes; got bytes"},
		{append(clone(cls), "C\x08\xff\xff\xff\xff\xff\xff\xff\xffQ."...), 0, "persistent reference: invalid oid ffffffffffffffff"},
		{append(clone(cls), "C\x08abcdefghK\x01\x86Q."...), 0, "persistent reference: expected a class; got int"},
		{append(clone(cls), "\x80\x03C\x05abc."...), 0, "truncated string"},
		{append(clone(cls), "\x80\x03X\x01\x00\x00\x00x\x93."...), 0, "STACK_GLOBAL needs two unicode strings"},
		{append(clone(cls), "(t\x85\x85."...), 0, ""}, // ((),): fine as a pickle; not bytes
		// states
		{zblk0[:len(zblk0)-3], 0, "ZBlk0 state pickle"},
		{d.pickle(ClassZBlk0, pyUni("abc")), 0, "ZBlk0 state: expected bytes; got unicode"},
		{d.pickle(ClassZBlk1, pyNone{}), 0, "ZBlk1 state: expected a persistent reference; got None"},
		{d.pickle(ClassZBigFile, int64(1)), 0, "ZBigFile state: expected (blksize, blktab); got int"},
		{d.pickle(ClassZBigFile, pyTuple{pyNone{}, r1}), 0, "ZBigFile state: blksize: expected int; got None"},
		{d.pickle(ClassZBigFile, pyTuple{true, r1}), 0, "ZBigFile state: blksize: expected int; got bool"},
		{d.pickle(ClassZBigFile, pyTuple{int64(1), int64(2)}), 0, "ZBigFile state: blktab: expected a persistent reference; got int"},
		// BTrees
		{d.pickle(ClassLOBTree, pyNone{}), IO, "class BTrees.LOBTree.LOBTree, expected BTrees.IOBTree.IOBTree or BTrees.IOBTree.IOBucket"},
		{zblk0, LO, "class wendelin.bigfile.file_zodb.ZBlk0, expected BTrees.LOBTree.LOBTree or BTrees.LOBTree.LOBucket"},
		{lot(int64(1)), LO, "LOBTree state: expected None or tuple[1..2]; got int"},
		{lot(pyTuple{int64(1)}), LO, "LOBTree state: inline bucket: expected tuple[1]; got int"},
		{lot(pyTuple{pyTuple{bucketState(nil, int64(0), int64(7))}}), LO,
			"LOBTree state: inline bucket: LOBucket state: value of key 0 is int, not a persistent reference"},
		{lot(treeState(ref(3, ClassLOBucket), ref(3, ClassLOBucket), int64(1))), LO, "LOBTree state: expected (kid0, key1, kid1, ...); got tuple[2]"},
		{lot(treeState(int64(3), ref(3, ClassLOBucket))), LO, "LOBTree state: firstbucket: expected a persistent reference; got int"},
		{lot(treeState(ref(3, ClassLOBTree), ref(3, ClassLOBucket))), LO, "LOBTree state: firstbucket: ref BTrees.LOBTree.LOBTree(0000000000000003) is not a LOBucket"},
		{lot(treeState(ref(3, ClassLOBucket), ref(3, ClassLOBucket), int64(5), ref(4, ClassLOBTree))), LO, "LOBTree state: kids of mixed kinds"},
		{lot(treeState(ref(3, ClassLOBucket), ref(3, ClassZBlk0))), LO, "LOBTree state: kid 0: ref wendelin.bigfile.file_zodb.ZBlk0(0000000000000003) is not a LOBTree or LOBucket"},
		{lot(treeState(ref(3, ClassLOBucket), ref(3, ClassLOBucket), pyNone{}, ref(4, ClassLOBucket))), LO, "LOBTree state: key 1: None, not int"},
		{lot(treeState(ref(3, ClassLOBucket), ref(3, ClassLOBucket), int64(5), ref(4, ClassLOBucket), int64(5), ref(5, ClassLOBucket))), LO, "LOBTree state: keys not ascending at 2"},
		{lob(int64(1)), LO, "LOBucket state: expected tuple[1..2]; got int"},
		{lob(pyTuple{pyTuple{int64(1)}}), LO, "LOBucket state: expected (k0, v0, k1, v1, ...); got tuple[1]"},
		{lob(bucketState(nil, int64(2), r1, int64(1), r1)), LO, "LOBucket state: keys not ascending at 1"},
		{lob(bucketState(nil, pyBytes("k"), r1)), LO, "LOBucket state: key 0: bytes, not int"},
		{lob(bucketState(ref(4, ClassLOBTree), int64(1), r1)), LO, "LOBucket state: next: ref BTrees.LOBTree.LOBTree(0000000000000004) is not a LOBucket"},
		{d.pickle(ClassIOBucket, bucketState(nil, int64(1)<<31, r1)), IO, "IOBucket state: key 0: 2147483648 out of the key range"},
	} {
		var err error
		switch {
		case tc.fam != 0:
			_, err = DecodeNode(tc.rec, tc.fam)
		default:
			class, _ := Class(tc.rec)
			switch class {
			case ClassZBigFile:
				_, _, err = DecodeZBigFile(tc.rec)
			case ClassZBlk1:
				_, _, err = DecodeRef(tc.rec)
			default:
				_, _, err = DecodeBytes(tc.rec)
			}
		}
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: no error", tc.rec)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\nerror %v\nwant  %q", tc.rec, err, tc.want)
		}
		checkRecord(t, tc.rec)
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func ExampleDecodeNode() {
	rec := dialects[3].pickle(ClassLOBucket, bucketState(nil, int64(0), ref(3, ClassZBlk0), int64(2), ref(4, ClassZBlk1)))
	n, err := DecodeNode(rec, LO)
	fmt.Println(n.Kind == Bucket, n.Entries, err)
	// Output: true [{0 0000000000000003} {2 0000000000000004}] <nil>
}

func TestFamilies(t *testing.T) {
	if IO.TreeClass() != ClassIOBTree || IO.BucketClass() != ClassIOBucket ||
		LO.TreeClass() != ClassLOBTree || LO.BucketClass() != ClassLOBucket {
		t.Fatal("family classes")
	}
	for id, c := range knownClasses {
		if p, i := classPath([]byte(c[:strings.LastIndexByte(c, '.')]), []byte(Short(c))); p != c || int(i) != id {
			t.Fatalf("classPath(%s) = %s %d", c, p, i)
		}
	}
}
