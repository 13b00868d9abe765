// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

//go:build race

package wcfstest

const raceEnabled = true
