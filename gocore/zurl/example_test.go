// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zurl_test

import (
	"fmt"

	"wendelin.dev/wcfs/gocore/zurl"
)

// A zurl is parsed once; the value gives what each part of WCFS needs.
func ExampleParse() {
	z, err := zurl.Parse("neo://db@b:2051,a:2051?ca=ca.crt&cert=c.crt&key=c.key&logfile=/tmp/neo.log")
	if err != nil {
		panic(err)
	}
	fmt.Println(z.Normalized()) // secrets and client options dropped, masters sorted
	fmt.Println(z.Mountpoint()) // /dev/shm/wcfs/<sha1 of the normalized zurl>
	fmt.Println(z.Scheme(), z.IsNetwork())

	// equivalent spellings share the mountpoint
	same, _ := zurl.Parse("neos://db@a:2051,b:2051")
	fmt.Println(same.Equivalent(z), same.Mountpoint() == z.Mountpoint())

	_, err = zurl.Parse("neo://db@127.0.0.1:99999")
	fmt.Println(err)
	// Output:
	// neos://db@a:2051,b:2051
	// /dev/shm/wcfs/be728fdbc17643b5b2cfa02076b5e792d1b27790
	// neos true
	// true true
	// invalid zurl "neo://db@127.0.0.1:99999": bad master address "127.0.0.1:99999": port "99999" is not a number from 1 to 65535
}

// Relative FileStorage paths are resolved against the working directory of
// the process that parses them (ParseIn: of another process), so that the
// server opens the file the user meant and two files never share a
// mountpoint; plain paths are FileStorage files.
func ExampleParseIn() {
	for _, s := range []string{"file:///srv/data.fs", "file://data.fs", "data.fs", "/srv/data.fs"} {
		z, err := zurl.ParseIn(s, "/home/u")
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-20s -> %-24s %s\n", z, z.StorageURL(), z.ID())
	}
	// Output:
	// file:///srv/data.fs  -> file:///srv/data.fs      99829ed67e14a9a7167ac85fb9d8249a49b977fa
	// file://data.fs       -> file:///home/u/data.fs   d6b42e01ffdafbfa978d8a63b20d10bae8759442
	// data.fs              -> file:///home/u/data.fs   d6b42e01ffdafbfa978d8a63b20d10bae8759442
	// /srv/data.fs         -> file:///srv/data.fs      99829ed67e14a9a7167ac85fb9d8249a49b977fa
}
