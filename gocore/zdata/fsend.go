// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb/storage/fs1"
)

// endGrace bounds how long an open waits for neo/go's FileStorage to take
// or refuse a data file that does not end with a complete transaction (the
// same time its own check of a cut transaction header takes).
const endGrace = 3 * time.Second

// checkEnd checks, right after the open, the end of the FileStorage data
// file at path. neo/go's driver opens a file whose last transaction is cut
// after its header (a truncated copy) and gives up a moment later, when its
// watcher reads that transaction's records: the storage would go down
// right after the open, and a server serve EIO until it exits. So when the
// file does not end with a complete transaction, the open waits for the
// driver's verdict: down (the open fails with its reason), the end
// complete (a commit was being written), or no verdict within endGrace
// (the driver takes the end for a commit in progress, as it is when a
// writer died in the middle: the storage is used as before).
//
// neo/go's Sync would wait for the watcher's pass, but it reads the reason
// of a shutdown unsynchronized (a data race with the watcher giving up).
func (s *storage) checkEnd(ctx context.Context, path string) error {
	if fs1EndsComplete(path) {
		return nil
	}
	grace := time.NewTimer(endGrace)
	defer grace.Stop()
	tick := time.NewTicker(endGrace / 30)
	defer tick.Stop()
	for {
		select {
		case <-s.down:
			return fmt.Errorf("%s does not end with a complete transaction: %w", path, s.isDown())
		case <-tick.C:
			if fs1EndsComplete(path) {
				return nil
			}
		case <-grace.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// fs1EndsComplete tells whether the FileStorage data file at path ends with
// a complete transaction (its length at the end matches its header), or
// has none. Errors (an unreadable file) are left to the driver.
func fs1EndsComplete(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < fs1.FileHeaderSize {
		return true
	}
	it := fs1.Iterate(f, st.Size(), fs1.IterBackward)
	err = it.NextTxn(fs1.LoadNoStrings)
	return err == nil || errors.Is(err, io.EOF)
}
