# Makefile for WCFS (Go core + Python bindings).
#
# Targets:
#   make deps    idempotent set-up: system packages (fuse3), fusectl, the Python venv (.venv)
#                from requirements.txt, Go tools (goimports, for gopy)
#   make build   build the project's commands into bin/ and the Python package into .venv
#   make demo    the main job: run WCFS on the embedded default demo database (README)
#   make test    run every test (Go, pytest, wendelin.core's own suite); does all set-up itself
#   make test-upstream  wendelin.core's own test suite against this project
#                (needs ../shared/upstream; skipped with one line without it)
#   make bench   run benchmarks (see BENCHMARKS.md)
#   make clean   remove build products
#
# Everything is driven from here so that a fresh machine needs nothing installed by hand.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

TOP := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))

# Go: the neo:// client (lab.nexedi.com/kirr/neo/go/neo) imports go123's tracing,
# whose runtime hooks exist only up to Go 1.25: force that toolchain (the go command
# downloads it through the module proxy by itself, once). See docs/toolchain notes
# in README.md.
export GOTOOLCHAIN := go1.25.5
# a test-only dependency of neo/go is not in the checksum database
export GONOSUMDB := github.com/gwenn
export GOFLAGS := -mod=mod
# neo/go links crawshaw.io/sqlite, whose amalgamated sqlite3.c makes GCC warn
# (-Wstringop-overflow, a false positive) on every fresh build: keep the build
# output about our code. The default flags otherwise (-O2 -g).
export CGO_CFLAGS ?= -O2 -g -Wno-stringop-overflow
GO ?= go

# Python: one interpreter, one venv, pinned packages.
PYTHON ?= python3
VENV   := $(TOP)/.venv
PY     := $(VENV)/bin/python
BIN    := $(TOP)/bin
TOOLS  := $(TOP)/.tools/bin
export WCFS_PYTHON := $(PY)

GO_TEST_FLAGS ?= -count=1 -timeout=30m
GO_RACE       ?= -race
PYTEST_FLAGS  ?= -q

.PHONY: all deps deps-system deps-venv deps-tools build build-go build-py demo \
        test test-go test-py test-upstream bench clean

all: build

# ---- deps ----

deps: deps-system deps-venv deps-tools

deps-system:
	@$(TOP)/scripts/deps-system.sh

deps-venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

deps-tools: $(TOOLS)/goimports

$(TOOLS)/goimports: go.mod
	@mkdir -p $(TOOLS)
	$(GO) build -o $(TOOLS)/goimports golang.org/x/tools/cmd/goimports

# ---- build ----

build: deps build-go build-py

# every directory under gocore/cmd is a command: bin/<name>
build-go:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./gocore/cmd/...
	@for f in $(TOP)/tools/bin/*; do \
		[ -e "$$f" ] || continue; \
		ln -sf "$$f" $(BIN)/$$(basename "$$f"); \
	done

# the Python package wendelin.wcfs (gopy extension + server binary) installed into .venv;
# reinstalled when its sources change (setup.py drives go build and gopy)
PYPKG_SRC := setup.py pyproject.toml go.mod go.sum \
	$(shell find $(TOP)/gocore $(TOP)/pybind $(TOP)/wendelin_wcfs \
		-name '*_test.go' -prune -o -name testdata -prune -o \( -name '*.go' -o -name '*.py' \) -print)

build-py: build-go $(VENV)/.wcfs-pkg.stamp

$(VENV)/.wcfs-pkg.stamp: $(PYPKG_SRC) $(VENV)/.stamp $(TOOLS)/goimports
	PATH=$(TOOLS):$$PATH $(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps .
	@touch $@

# ---- main job ----

DEMO_DIR ?= $(TOP)/demo

demo: build
	@$(TOP)/scripts/demo.sh "$(DEMO_DIR)"

# ---- tests ----

test: build test-go test-py test-upstream

test-go:
	$(GO) vet ./gocore/... ./pybind/...
	$(GO) test $(GO_RACE) $(GO_TEST_FLAGS) ./gocore/...

test-py:
	@if compgen -G "tests/test_*.py" >/dev/null; then \
		cd $(TOP) && $(PY) -m pytest $(PYTEST_FLAGS) tests/ ; \
	fi

# wendelin.core's own suite with our server and our gateway in place of the
# original's (scripts/test-upstream.py; accepted differences in
# tests/upstream-accepted-differences.ini)
test-upstream: build
	$(PY) $(TOP)/scripts/test-upstream.py

# ---- benchmarks ----

bench: build
	$(GO) test -run=NONE -bench=. -benchtime=3x -count=1 -timeout=60m ./gocore/...

clean:
	rm -rf $(BIN) $(TOP)/build $(TOP)/dist $(TOP)/*.egg-info $(TOP)/.tools
	find $(TOP) -name __pycache__ -prune -exec rm -rf {} +
