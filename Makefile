# Aperture: `make run` sets up and runs the product, `make test` sets up and tests it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     := .venv
PY       := $(VENV)/bin/python
PIP      := $(VENV)/bin/pip
BPF_DIR  := src/aperture/bpf
BPF_SRC  := $(wildcard $(BPF_DIR)/*.bpf.c)
BPF_OBJ  := $(BPF_SRC:.bpf.c=.bpf.o)
BPF_HDR  := $(wildcard $(BPF_DIR)/*.h)
MACHINE  := $(shell uname -m)
BPF_ARCH := $(if $(filter aarch64,$(MACHINE)),arm64,x86)
MULTIARCH:= $(shell gcc -dumpmachine 2>/dev/null || echo $(MACHINE)-linux-gnu)
CLANG    ?= clang
APT_PKGS := clang llvm libbpf-dev libbpf1 bpftool libc6-dbg gcc g++ binutils make \
            linux-perf bpftrace strace golang-go prometheus chromium lld

.PHONY: help setup apt venv bpf native filters proto run test lint bench soak fuzz reliability-doc clean dist docs ui api-types

help:
	@echo "make run    set up, then run an aggregator + an agent profiling this host (all modes);"
	@echo "            the dashboard is at http://127.0.0.1:9090"
	@echo "make test   set up, then run every test (BPF tests need root)"
	@echo "make lint   ruff + mypy;  make bench  overhead benchmarks;  make clean"
	@echo "make soak   load, soak and fault runs (about 60 min);  make fuzz  long fuzzing runs"
	@echo "make dist   the wheel in dist/ (BPF objects, and the dashboard if built);  make docs  the site"
	@echo "make api-types  ui/src/api/schema.ts from the API's models (make test fails while it differs)"

setup: apt venv bpf native filters ui

# Installs only what is missing, so a second run costs a dpkg query.
apt:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root (or sudo) to install:$$missing"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# CO-RE objects: -g emits the BTF that relocations need, llvm-strip -g then
# drops DWARF but keeps .BTF/.BTF.ext, so an object is a few tens of KB.
$(BPF_DIR)/%.bpf.o: $(BPF_DIR)/%.bpf.c $(BPF_HDR)
	$(CLANG) -O2 -g -Wall -Werror -mcpu=v3 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) \
	  -I/usr/include/$(MULTIARCH) -I$(BPF_DIR) -c $< -o $@
	llvm-strip -g $@

bpf: $(BPF_OBJ)

# The agent's compiled hot paths, loaded with ctypes (agent/native.py): the .eh_frame
# interpreter and the ELF function-symbol reader. tables.py and elf.py are the
# reference and the fallback where the library is missing; plain C, no Python headers.
NATIVE_SRC := src/aperture/agent/unwind/ehframe.c src/aperture/agent/symbols/elfsyms.c
NATIVE_LIB := src/aperture/agent/_native.so
$(NATIVE_LIB): $(NATIVE_SRC)
	gcc -O2 -g -Wall -Wextra -Werror -shared -fPIC -o $@ $(NATIVE_SRC)

native: $(NATIVE_LIB)

# The example WASM filters (docs/filters.md): clang's wasm32 target and Debian lld's
# wasm-ld, no libc (the header brings memset/memcpy); the .wasm files are git-ignored.
FILTER_DIR := src/aperture/filters/examples
FILTER_WASM := $(patsubst %.c,%.wasm,$(wildcard $(FILTER_DIR)/*.c))
$(FILTER_DIR)/%.wasm: $(FILTER_DIR)/%.c $(FILTER_DIR)/aperture_filter.h
	$(CLANG) --target=wasm32 -O2 -Wall -Werror -nostdlib -Wl,--no-entry \
	  -Wl,--export=aperture_alloc -Wl,--export=aperture_filter -o $@ $<

filters: $(FILTER_WASM)

# The dashboard (ui/ -> src/aperture/aggregator/web/): `npm ci` when the lock file
# changes, `npm run build` (type check + vite) when a UI source changes; both stamps
# are git-ignored, so a fresh clone builds once and a rerun costs a few stat calls.
UI_DIR  := ui
WEB_OUT := src/aperture/aggregator/web
UI_SRC  := $(shell find $(UI_DIR)/src -type f 2>/dev/null) \
           $(addprefix $(UI_DIR)/,index.html package.json vite.config.ts tsconfig.json tsconfig.node.json)

$(UI_DIR)/node_modules/.installed: $(UI_DIR)/package-lock.json $(UI_DIR)/package.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js >= 20.19 to build the dashboard"; exit 1; }
	cd $(UI_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_OUT)/.built: $(UI_DIR)/node_modules/.installed $(UI_SRC)
	cd $(UI_DIR) && npm run build --silent
	touch $@

ui: $(WEB_OUT)/.built

# The generated protobuf code is committed (the agent needs no protoc); this
# regenerates it after a .proto change.
# pprof's profile.proto and Pyroscope's push API are messages only (served over HTTP).
PROTO := $(wildcard src/aperture/proto/v1/*.proto)
INTEROP_PROTO := $(wildcard src/aperture/proto/pprof/*.proto src/aperture/proto/pyroscope/*.proto src/aperture/proto/otlp/*.proto)
proto: venv
	$(PY) -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src --grpc_python_out=src $(PROTO)
	$(PY) -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src $(INTEROP_PROTO)

run: setup
	tools/run.sh

test: setup
	cd $(UI_DIR) && npm test --silent
	$(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check src tests bench reliability tools
	$(VENV)/bin/ruff format --check src tests bench reliability tools
	$(VENV)/bin/mypy
	cd $(UI_DIR) && npm run lint --silent

# Each benchmark prints a table and writes it to bench/results/ (roughly 25 min in all).
bench: setup
	$(PY) bench/cpu_overhead.py
	$(PY) bench/syscall_overhead.py
	$(PY) bench/ingest.py
	$(PY) bench/storage.py
	$(PY) bench/filters.py
	$(PY) bench/unwind.py
	$(PY) bench/python_frames.py
	$(PY) bench/agent_cost.py
	$(PY) bench/offcpu_cost.py

# Reliability (docs/reliability.md): each run writes reliability/results/<name>.json,
# and the page is generated from those files, never written by hand.
soak: setup
	$(PY) reliability/soak.py
	$(PY) reliability/faults.py
	$(PY) tools/gen_reliability_doc.py

fuzz: setup
	$(PY) reliability/fuzz.py
	$(PY) tools/gen_reliability_doc.py

reliability-doc: venv
	$(PY) tools/gen_reliability_doc.py

# A wheel with the prebuilt CO-RE objects, so hosts need no clang, and the dashboard
# (built first when npm is there). Without a built dashboard the wheel still builds,
# and its aggregator serves the API alone.
dist: venv bpf native $(if $(shell command -v npm 2>/dev/null),ui)
	rm -f dist/aperture-*
	@test -f src/aperture/aggregator/web/index.html || \
	  echo "note: the dashboard is not built (make ui): the wheel has no web UI"
	@# sdist first, then the wheel from it: files left in build/lib never leak in.
	$(PY) -m build --outdir dist .

# The dashboard's types of the analysis answers come from the aggregator's OpenAPI document
# (the models in src/aperture/query/models.py); tests/unit/test_api_types.py checks them.
api-types: venv
	$(PY) tools/gen_api_types.py

# The reference pages are generated (flags from the argparse parsers, messages from the
# .proto files, the cluster DDL from the schema code, tables from bench/results/) so they
# cannot drift; --strict fails on a broken link or anchor.
docs: venv
	$(PY) tools/gen_cli_docs.py
	$(PY) tools/gen_reference_docs.py
	$(VENV)/bin/mkdocs build --strict --site-dir build/site
	@echo "the site is in build/site (mkdocs serve for a live preview)"

clean:
	rm -f $(BPF_OBJ) $(FILTER_WASM) $(NATIVE_LIB)
	rm -rf out build dist .pytest_cache .mypy_cache .ruff_cache
