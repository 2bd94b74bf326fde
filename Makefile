# videolmm — the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ART := .artifacts
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install demo test test-all lint format bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# README command 1: build the embedded default (a tiny checkpoint, synthetic clips) and run the
# real lmms-eval CLI on it, offline; prints lmms-eval's results table.
demo: install
	$(VENV)/bin/videolmm tiny --family llava_next_video --out $(ART)/tiny-llava-next-video
	VIDEOLMM_CACHE=$(ART)/cache $(VENV)/bin/lmms-eval --model llava_next_video \
		--model_args pretrained=$(ART)/tiny-llava-next-video,device=cpu,max_frames_num=8 \
		--tasks videolmm_demo --batch_size 4 --output_path $(ART)/demo-results --log_samples

# README command 2: the test suite (CI runs this).
test: install
	$(PY) -m pytest

test-all: install
	$(PY) -m pytest -m "not gpu and not hub"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(ART) .pytest_cache .ruff_cache
