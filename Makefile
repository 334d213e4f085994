# Quick start: `make demo` builds the sample dataset, `make test` runs the tests.
# Both create .venv and install the pinned stack first (idempotent: a stamp file
# records that pyproject.toml and constraints.txt have not changed since).
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
OUT     ?= out/sample

# Every pip call sees the project's pins; Prefect stays local, quiet and offline.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
# pip installs without compiling (half of a clean install: it would compile all of torch,
# transformers and Prefect); each module is compiled on its first import and kept, so
# only what runs is compiled, once. An environment that forbids writing bytecode would
# make every process compile its imports again (torch: 24 s instead of 14 s).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo test server worker clean bench-download

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile --disable-pip-version-check \
		--config-settings editable_mode=compat -e '.[sample,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/phraseharmony build --config configs/sample.yaml --out $(OUT)

# Two pytest-xdist workers (CI has 2 cores), whole files per worker so module fixtures
# are made once, the longest files first (tests/conftest.py orders them; xdist would
# otherwise start with the files of most tests); session fixtures are shared.
TEST_WORKERS ?= 2
# The tests' files (~0.7 GB of builds, Prefect databases, TMPDIR of every process they
# start) go to RAM when /dev/shm has room: on a disk they spent ~60 core-seconds waiting
# on I/O (431 s -> 383 s). Removed after a passing run, kept for a failing one.
TEST_TMP_MIN_KB := 3000000

test: $(STAMP)
	$(VENV)/bin/ruff check .
	@base=$${TMPDIR:-/tmp}; \
	if [ -d /dev/shm ] && [ -w /dev/shm ] && \
	   [ "$$(df -Pk /dev/shm | awk 'NR == 2 {print $$4}')" -gt $(TEST_TMP_MIN_KB) ]; then base=/dev/shm; fi; \
	tmp=$$(mktemp -d "$$base/phraseharmony-tests.XXXXXX"); \
	echo "test files: $$tmp"; \
	if TMPDIR="$$tmp" $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	     --basetemp "$$tmp/pytest"; then rm -rf "$$tmp"; \
	else status=$$?; echo "test files kept for a look: $$tmp (rm -rf it after)"; exit $$status; fi

# A long-lived local Prefect server, a process work pool and a worker (two terminals).
server: $(STAMP)
	$(VENV)/bin/prefect server start --host 127.0.0.1 --port 4200

worker: $(STAMP)
	PREFECT_API_URL=http://127.0.0.1:4200/api $(VENV)/bin/prefect work-pool create phraseharmony --type process --overwrite
	PREFECT_API_URL=http://127.0.0.1:4200/api $(VENV)/bin/prefect work-pool create phraseharmony-gpu --type process --overwrite
	PREFECT_API_URL=http://127.0.0.1:4200/api $(VENV)/bin/prefect --no-prompt deploy --all
	PREFECT_API_URL=http://127.0.0.1:4200/api $(VENV)/bin/prefect worker start --pool phraseharmony

# img2dataset pins pandas<3, so the download benchmark gets a venv of its own.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-compile --disable-pip-version-check \
		--config-settings editable_mode=compat -e '.[bench]'
	touch $@

bench-download: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/download.py

clean:
	rm -rf out .prefect
