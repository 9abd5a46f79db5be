# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test lint format typecheck bench bench-serving wrk peers clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: pip takes the build that lies on this disk (torchaudio 2.11 works beside it).
	$(PY) -m pip install --quiet "torch>=2.9,<=2.14.1" "torchaudio>=2.9"
	$(PY) -m pip install --quiet -e ".[dev,pretrained,distributed]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/recsys demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check recsys training index serving api orchestration tests bench
	$(VENV)/bin/ruff format --check recsys training index serving api orchestration tests bench
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format recsys training index serving api orchestration tests bench
	$(VENV)/bin/ruff check --fix recsys training index serving api orchestration tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy recsys training index serving api orchestration bench

bench: $(STAMP)
	$(PY) bench/decode.py
	$(PY) bench/faiss_index.py --sizes 100000
	$(PY) bench/quality.py

# The HTTP benchmarks (bench/api_serving.py, bench/scale.py) drive the API with wrk (Debian's package).
wrk:
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)

# The vector databases bench/api_serving.py compares with (LanceDB, Chroma, pgvector with its own
# PostgreSQL): the `peers` extra, for the benchmark only.
peers: $(STAMP)
	$(PY) -m pip install --quiet -e ".[peers]"

bench-serving: $(STAMP) wrk peers
	$(PY) bench/api_serving.py --sizes 100000
	$(PY) bench/scale.py --videos 1000000 --memory-budget 600M

clean:
	rm -rf $(VENV) .recsys .pytest_cache .ruff_cache .mypy_cache
