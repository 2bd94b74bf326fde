# videolmm — the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ART := .artifacts
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install demo test test-serve-throughput test-all fuzz lint format bench serve-tiny dist clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# README command 1: the embedded default (the trained tiny LLaVA-NeXT-Video checkpoint shipped with
# videolmm, synthetic clips made locally) through the real lmms-eval CLI, offline; prints the
# results table with real accuracies on the held-out split.
demo: install
	$(VENV)/bin/videolmm tiny --family llava_next_video --trained --out $(ART)/trained-llava-next-video
	VIDEOLMM_CACHE=$(ART)/cache $(VENV)/bin/lmms-eval --model llava_next_video \
		--model_args pretrained=$(ART)/trained-llava-next-video,device=cpu \
		--tasks videolmm_synthetic,videolmm_demo --batch_size 16 --output_path $(ART)/demo-results --log_samples

# README command 2: the test suite (CI runs this).
test: install
	$(PY) -m pytest

# tests/serve again on a cluster with Ray Serve's throughput-optimized settings (direct ingress, gRPC
# between deployments; docs/serving.md "Lower latency"). CI runs it after `make test`.
test-serve-throughput: install
	VIDEOLMM_TEST_RAY_MODE=throughput $(PY) -m pytest tests/serve

test-all: install
	$(PY) -m pytest -m "not gpu and not hub"

# Property-based fuzzing (hypothesis) of the request parser and the media path, FUZZ_SECONDS in all
# (default 10 min; `make test` runs a short seeded pass of the same tests). Counts go to
# .artifacts/reliability.md; a failure prints hypothesis's minimal falsifying input.
FUZZ_SECONDS ?= 600
fuzz: install
	mkdir -p $(ART) && rm -f $(ART)/fuzz.txt
	VIDEOLMM_FUZZ_SECONDS=$(FUZZ_SECONDS) VIDEOLMM_FUZZ_REPORT=$(ART)/fuzz.txt \
		$(PY) -m pytest -p no:cacheprovider -rxX tests/test_fuzz.py; status=$$?; cat $(ART)/fuzz.txt; exit $$status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

serve-tiny: install
	$(VENV)/bin/videolmm tiny --family llava_next_video --out $(ART)/tiny-llava-next-video
	$(VENV)/bin/videolmm tiny --family video_llava --out $(ART)/tiny-video-llava
	$(VENV)/bin/serve run serve_configs/tiny.yaml

# Benchmarks (not tests; ~30 min on 2 cores): each writes benchmarks/results/*.json, a plot and its
# section of docs/benchmarks.md. Every number there is a ratio measured side by side in one run.
bench: install
	$(PY) benchmarks/decode_bench.py
	$(PY) benchmarks/eval_bench.py
	$(PY) benchmarks/serve_bench.py
	$(PY) benchmarks/scheduler_bench.py

# A wheel (and sdist) in dist/ for machines without a package index: pip install dist/videolmm-*.whl[eval]
dist: install
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(ART) .pytest_cache .ruff_cache build dist
