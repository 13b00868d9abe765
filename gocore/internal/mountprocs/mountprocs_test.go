// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package mountprocs

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/testenv"
)

// The users of a real mount (a tmpfs): an open file, a mapping and a cwd are
// found; a file at the same path under the mount (opened before mounting)
// is not.
func TestMountUsers(t *testing.T) {
	testenv.NeedRoot(t, "mounts a tmpfs")
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	// a file of the directory under the mount, open across the mount
	under, err := os.Create(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer under.Close()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mnt))
	if err != nil || len(infos) != 1 {
		t.Fatalf("mount table at %s: %v %v", mnt, infos, err)
	}
	m := Mount{ID: infos[0].ID, Dev: unix.Mkdev(uint32(infos[0].Major), uint32(infos[0].Minor)), Point: mnt}

	users, err := MountUsers(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 0 {
		t.Fatalf("users of a mount nobody uses: %+v", users)
	}

	f, err := os.Create(filepath.Join(mnt, "g"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	child := exec.Command("sleep", "60")
	child.Dir = mnt
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		child.Process.Kill() // our child, not reaped yet: its pid is its own
		child.Wait()
	}()

	users, err = MountUsers(m)
	if err != nil {
		t.Fatal(err)
	}
	find := func(pid int) *User {
		for i := range users {
			if users[i].Pid == pid {
				return &users[i]
			}
		}
		t.Fatalf("pid %d not among the users %+v", pid, users)
		return nil
	}
	self := find(os.Getpid())
	want := []string{
		"fd " + strconv.Itoa(int(f.Fd())) + " -> " + f.Name(),
		"mmap -> " + f.Name(),
	}
	var got []string
	for _, u := range self.Uses {
		got = append(got, u.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("uses of this process: %q, want %q (not the file under the mount)", got, want)
	}
	if k := self.Kinds(); !slices.Equal(k, []string{"fd", "mmap"}) {
		t.Errorf("kinds %q", k)
	}
	c := find(child.Process.Pid)
	if len(c.Uses) != 1 || c.Uses[0].String() != "cwd -> "+mnt || c.Comm != "sleep" || len(c.Argv) != 2 {
		t.Errorf("child: %+v; want its cwd", *c)
	}
	if len(users) != 2 {
		t.Errorf("users %+v; want this process and its child", users)
	}
}
