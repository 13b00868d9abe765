// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"context"
	"fmt"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/zpickle"
)

// ZBigFileState is the decoded state of a ZBigFile record.
type ZBigFileState struct {
	BlkSize int64
	BlkTab  zodb.Oid // oid of the blktab LOBTree
}

// DecodeZBigFile decodes a raw ZODB data record that must be a ZBigFile.
//
// It needs no connection: tools comparing ZBigFile records between
// revisions (e.g. to detect a changed blksize or a replaced blktab) load the
// records with IStorage.Load and decode them here. A record of another class
// is ErrNotZBigFile; a bad state is ErrMalformed.
func DecodeZBigFile(rec []byte) (ZBigFileState, error) {
	class, st, err := zpickle.DecodeZBigFile(rec)
	if class != "" && class != ClassZBigFile {
		return ZBigFileState{}, classErrorf(ErrNotZBigFile, "not a ZBigFile: class %s", class)
	}
	if err != nil {
		return ZBigFileState{}, malformed(err)
	}
	if err := checkBlkSize(st.BlkSize); err != nil {
		return ZBigFileState{}, err
	}
	if c := st.BlkTab.Class; c != "" && c != zpickle.ClassLOBTree {
		return ZBigFileState{}, malformedf("ZBigFile state: blktab must be a BTrees.LOBTree.LOBTree; got %s", st.BlkTab)
	}
	return ZBigFileState{BlkSize: st.BlkSize, BlkTab: st.BlkTab.Oid}, nil
}

// LoadZBigFileState loads the ZBigFile record oid as of at from stor and
// decodes it (see DecodeZBigFile). It returns the record's serial too.
func LoadZBigFileState(ctx context.Context, stor zodb.IStorage, oid zodb.Oid, at zodb.Tid) (_ ZBigFileState, serial zodb.Tid, err error) {
	buf, serial, err := stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		if isMissing(err) {
			return ZBigFileState{}, 0, fmt.Errorf("zdata: load ZBigFile %s @%s: oid missing: %w", oid, at, err)
		}
		return ZBigFileState{}, 0, fmt.Errorf("zdata: load ZBigFile %s @%s: %w", oid, at, err)
	}
	defer buf.Release()
	st, err := DecodeZBigFile(buf.Data)
	if err != nil {
		return ZBigFileState{}, serial, fmt.Errorf("zdata: load ZBigFile %s @%s: %w", oid, at, err)
	}
	return st, serial, nil
}
