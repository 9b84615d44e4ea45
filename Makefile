# ladsim: `make install` then `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch's CPU wheel first when no NVIDIA GPU is present, so pip never fetches a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0

# The trainer integrations each get their own environment (verl and TRL pin different transformers).
# verl installs with --no-deps plus what its loss path imports (its full requirements pull GPU stacks).
VERL_VENV ?= .venv-verl
TRL_VENV ?= .venv-trl
RAY_VENV ?= .venv-ray
VERL_DEPS := codetiming "tensordict>=0.8.0,<=0.10.0,!=0.9.0" hydra-core ray "transformers>=5.5.3,<5.11,!=5.6.0" datasets
CPU_TORCH_FIRST = if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: torch from pyproject"; \
	else $(1)/bin/pip install -q "$(TORCH_CPU)" || echo "local CPU wheel $(TORCH_CPU) not found"; fi
# The opening of every integration environment's recipe: $(call NEW_VENV,<venv>).
define NEW_VENV
$(PY) -m venv $(1)
$(1)/bin/pip install -q --upgrade pip
@$(call CPU_TORCH_FIRST,$(1))
endef

.PHONY: install test lint bench figures verify clean env-verl env-trl env-ray test-verl test-trl test-ray

install: $(BIN)/ladsim

$(BIN)/ladsim: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: installing torch from pyproject"; \
	else $(BIN)/pip install -q "$(TORCH_CPU)" || echo "local CPU wheel $(TORCH_CPU) not found: torch comes from pyproject"; fi
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

test: install
	$(BIN)/python -m pytest -n auto

lint: install
	$(BIN)/ruff check ladsim tests

bench: install
	$(BIN)/ladsim bench bandit
	$(BIN)/ladsim bench tree
	$(BIN)/ladsim bench prompts
	$(BIN)/ladsim bench loss

figures: install
	$(BIN)/ladsim figures

verify: install
	$(BIN)/ladsim verify

env-verl: $(VERL_VENV)/.built

$(VERL_VENV)/.built: pyproject.toml Makefile
	$(call NEW_VENV,$(VERL_VENV))
	$(VERL_VENV)/bin/pip install -q --no-deps "verl==0.9.1"
	$(VERL_VENV)/bin/pip install -q $(VERL_DEPS) "pytest>=7.4"
	$(VERL_VENV)/bin/pip install -q -e .
	@touch $@

env-trl: $(TRL_VENV)/.built

$(TRL_VENV)/.built: pyproject.toml Makefile
	$(call NEW_VENV,$(TRL_VENV))
	$(TRL_VENV)/bin/pip install -q -e ".[trl]" "pytest>=7.4"
	@touch $@

# Studies on a Ray cluster (ladsim[ray]): tests against a real local cluster of 2 CPUs.
env-ray: $(RAY_VENV)/.built

$(RAY_VENV)/.built: pyproject.toml Makefile
	$(call NEW_VENV,$(RAY_VENV))
	$(RAY_VENV)/bin/pip install -q -e ".[dev,ray]"
	@touch $@

test-verl: env-verl
	$(VERL_VENV)/bin/python -m pytest tests/integration/verl

test-trl: env-trl
	$(TRL_VENV)/bin/python -m pytest tests/integration/trl

test-ray: env-ray
	$(RAY_VENV)/bin/python -m pytest tests/integration/ray

clean:
	rm -rf $(VENV) $(VERL_VENV) $(TRL_VENV) $(RAY_VENV) .pytest_cache .hypothesis runs
