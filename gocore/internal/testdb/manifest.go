// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package testdb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// ManifestFormat is the format tag of manifests (small.json's).
const ManifestFormat = "wendelin-zbigfile-fixture/1"

// Manifest is the expected content of every ZBigFile of a database at every
// transaction: the format of ../shared/testdata/zodb/small.json, also written
// by the Python toolkit (tools/pylib/ztestdb/manifest.py).
type Manifest struct {
	Format    string
	Storage   string // storage file name or zurl
	Generator string
	Dataset   string
	RootOid   zodb.Oid
	Head      zodb.Tid
	// Files is the last known identity of every file that ever existed.
	Files map[string]FileIdentity
	// FileNames lists Files in the manifest's order (creation order).
	FileNames    []string
	Transactions []*Txn
}

// FileIdentity is a ZBigFile's root key, oid and block size.
type FileIdentity struct {
	Oid     zodb.Oid
	RootKey string
	BlkSize int64
}

// Txn is the state of the database right after one transaction.
type Txn struct {
	Tid         zodb.Tid
	Description string
	// ChangedFiles are the files whose objects the transaction modified, or
	// that appeared or disappeared in it.
	ChangedFiles []string
	// Files are the files that exist (reachable from the root) as of Tid.
	Files map[string]*FileState
}

// FileState is one file as of one transaction.
type FileState struct {
	Oid     zodb.Oid // ZBigFile oid (older fixtures: from Manifest.Files)
	BlkSize int64
	Size    int64  // (max key + 1) * BlkSize, 0 when empty
	Sha256  string // of the whole content; "" when the generator did not hash it
	// Blocks are the blocks present in blktab; others are holes.
	Blocks map[int64]Block
}

// Block is one block present in blktab.
type Block struct {
	Fmt     string   // "ZBlk0" or "ZBlk1"
	Oid     zodb.Oid // ZBlk oid
	DataLen int64    // length of the data with trailing zeros stripped
	Sha256  string   // of the blksize-padded block
}

// NBlocks returns the number of blocks of the file (Size / BlkSize).
func (f *FileState) NBlocks() int64 {
	if f.BlkSize == 0 {
		return 0
	}
	return f.Size / f.BlkSize
}

// BlockSha256 returns the expected sha256 (hex) of block blk as read through
// WCFS: the block's hash, or the hash of blksize zeros for a hole.
func (f *FileState) BlockSha256(blk int64) string {
	if b, ok := f.Blocks[blk]; ok {
		return b.Sha256
	}
	return ZeroSha256(f.BlkSize)
}

// SortedBlocks returns the numbers of the blocks present, ascending.
func (f *FileState) SortedBlocks() []int64 {
	blks := make([]int64, 0, len(f.Blocks))
	for blk := range f.Blocks {
		blks = append(blks, blk)
	}
	sort.Slice(blks, func(i, j int) bool { return blks[i] < blks[j] })
	return blks
}

// ZeroSha256 returns the sha256 (hex) of n zero bytes.
func ZeroSha256(n int64) string {
	h := sha256.New()
	zero := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zero)))
		h.Write(zero[:k])
		n -= k
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Txn returns the transaction with the given tid, or nil.
func (m *Manifest) Txn(tid zodb.Tid) *Txn {
	i := sort.Search(len(m.Transactions), func(i int) bool { return m.Transactions[i].Tid >= tid })
	if i < len(m.Transactions) && m.Transactions[i].Tid == tid {
		return m.Transactions[i]
	}
	return nil
}

// AsOf returns the state of the database as of at: the last transaction with
// tid <= at, or nil when at is before the first one.
func (m *Manifest) AsOf(at zodb.Tid) *Txn {
	i := sort.Search(len(m.Transactions), func(i int) bool { return m.Transactions[i].Tid > at })
	if i == 0 {
		return nil
	}
	return m.Transactions[i-1]
}

// Last returns the last transaction (the head), or nil for an empty manifest.
func (m *Manifest) Last() *Txn {
	if len(m.Transactions) == 0 {
		return nil
	}
	return m.Transactions[len(m.Transactions)-1]
}

// LoadManifest reads and parses a manifest file.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("testdb: load manifest: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("testdb: %s: %w", path, err)
	}
	return m, nil
}

// JSON shapes of the manifest.
type jsonManifest struct {
	Format       string          `json:"format"`
	Storage      string          `json:"storage"`
	Generator    string          `json:"generator"`
	Dataset      string          `json:"dataset"`
	RootOid      string          `json:"root_oid"`
	Head         string          `json:"head"`
	Files        json.RawMessage `json:"files"`
	Transactions []jsonTxn       `json:"transactions"`
}

type jsonFileIdentity struct {
	Oid     string `json:"oid"`
	RootKey string `json:"root_key"`
	BlkSize int64  `json:"blksize"`
}

type jsonTxn struct {
	Tid          string              `json:"tid"`
	Description  string              `json:"description"`
	ChangedFiles []string            `json:"changed_files"`
	Files        map[string]jsonFile `json:"files"`
}

type jsonFile struct {
	Oid     *string              `json:"oid"`
	BlkSize *int64               `json:"blksize"`
	Size    int64                `json:"size"`
	Sha256  *string              `json:"sha256"`
	Blocks  map[string]jsonBlock `json:"blocks"`
}

type jsonBlock struct {
	Fmt     string `json:"fmt"`
	Oid     string `json:"oid"`
	DataLen int64  `json:"datalen"`
	Sha256  string `json:"sha256"`
}

// ParseManifest parses a manifest (small.json's format). File entries without
// oid/blksize (older fixtures) take them from the top-level files.
func ParseManifest(data []byte) (*Manifest, error) {
	var j jsonManifest
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if j.Format != ManifestFormat {
		return nil, fmt.Errorf("manifest: format %q, want %q", j.Format, ManifestFormat)
	}
	m := &Manifest{Format: j.Format, Storage: j.Storage, Generator: j.Generator,
		Dataset: j.Dataset, Files: map[string]FileIdentity{}}
	var err error
	if m.RootOid, err = zodb.ParseOid(j.RootOid); err != nil {
		return nil, fmt.Errorf("manifest: root_oid: %w", err)
	}
	if j.Head != "" {
		if m.Head, err = zodb.ParseTid(j.Head); err != nil {
			return nil, fmt.Errorf("manifest: head: %w", err)
		}
	}

	// files: keep the JSON order
	names, err := objectKeys(j.Files)
	if err != nil {
		return nil, fmt.Errorf("manifest: files: %w", err)
	}
	var files map[string]jsonFileIdentity
	if len(j.Files) > 0 {
		if err := json.Unmarshal(j.Files, &files); err != nil {
			return nil, fmt.Errorf("manifest: files: %w", err)
		}
	}
	for _, name := range names {
		f := files[name]
		oid, err := zodb.ParseOid(f.Oid)
		if err != nil {
			return nil, fmt.Errorf("manifest: files: %s: %w", name, err)
		}
		m.Files[name] = FileIdentity{Oid: oid, RootKey: f.RootKey, BlkSize: f.BlkSize}
		m.FileNames = append(m.FileNames, name)
	}

	for _, jt := range j.Transactions {
		t, err := parseTxn(jt, m.Files)
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		if last := m.Last(); last != nil && t.Tid <= last.Tid {
			return nil, fmt.Errorf("manifest: tid %s after %s: not ascending", t.Tid, last.Tid)
		}
		m.Transactions = append(m.Transactions, t)
	}
	if last := m.Last(); last != nil && m.Head != last.Tid {
		return nil, fmt.Errorf("manifest: head %s is not the last transaction %s", m.Head, last.Tid)
	}
	return m, nil
}

func parseTxn(jt jsonTxn, ids map[string]FileIdentity) (*Txn, error) {
	tid, err := zodb.ParseTid(jt.Tid)
	if err != nil {
		return nil, fmt.Errorf("transaction: %w", err)
	}
	t := &Txn{Tid: tid, Description: jt.Description, ChangedFiles: jt.ChangedFiles,
		Files: make(map[string]*FileState, len(jt.Files))}
	if t.ChangedFiles == nil {
		t.ChangedFiles = []string{}
	}
	for name, jf := range jt.Files {
		f, err := parseFile(jf, ids[name])
		if err != nil {
			return nil, fmt.Errorf("@%s: %s: %w", tid, name, err)
		}
		t.Files[name] = f
	}
	return t, nil
}

func parseFile(jf jsonFile, id FileIdentity) (*FileState, error) {
	f := &FileState{Oid: id.Oid, BlkSize: id.BlkSize, Size: jf.Size,
		Blocks: make(map[int64]Block, len(jf.Blocks))}
	if jf.Oid != nil {
		oid, err := zodb.ParseOid(*jf.Oid)
		if err != nil {
			return nil, err
		}
		f.Oid = oid
	} else if id.RootKey == "" {
		return nil, fmt.Errorf("no oid, and not in files")
	}
	if jf.BlkSize != nil {
		f.BlkSize = *jf.BlkSize
	}
	if f.BlkSize <= 0 {
		return nil, fmt.Errorf("blksize %d", f.BlkSize)
	}
	if jf.Sha256 != nil {
		f.Sha256 = *jf.Sha256
	}
	for key, jb := range jf.Blocks {
		blk, err := strconv.ParseInt(key, 10, 64)
		if err != nil || blk < 0 {
			return nil, fmt.Errorf("block number %q", key)
		}
		oid, err := zodb.ParseOid(jb.Oid)
		if err != nil {
			return nil, fmt.Errorf("blk %d: %w", blk, err)
		}
		f.Blocks[blk] = Block{Fmt: jb.Fmt, Oid: oid, DataLen: jb.DataLen, Sha256: jb.Sha256}
	}
	return f, nil
}

// objectKeys returns the keys of a JSON object in their order.
func objectKeys(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil { // null
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("not a JSON object")
		}
		keys = append(keys, key)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
