# ladsim: `make install` then `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch's CPU wheel first when no NVIDIA GPU is present, so pip never fetches a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: install test lint bench figures verify clean

install: $(BIN)/ladsim

$(BIN)/ladsim: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: installing torch from pyproject"; \
	else $(BIN)/pip install -q "$(TORCH_CPU)" || echo "local CPU wheel $(TORCH_CPU) not found: torch comes from pyproject"; fi
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check ladsim tests

bench: install
	$(BIN)/ladsim bench bandit
	$(BIN)/ladsim bench loss

figures: install
	$(BIN)/ladsim figures

verify: install
	$(BIN)/ladsim verify

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis runs
