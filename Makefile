# pyv86 developer entry points. README's Quick start uses `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(wildcard plugins/*/pyproject.toml) $(wildcard examples/plugins/*/pyproject.toml)
MACHINE ?= examples/machines/default.toml

.PHONY: install install-test run test guest passt clean

$(BIN)/python:
	@$(PY) -m venv --help >/dev/null 2>&1 && $(PY) -c 'import ensurepip' 2>/dev/null || { \
	    echo "make: installing Debian's python3-venv"; SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get install -y -q python3-venv >/dev/null; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

install: $(BIN)/python
	$(BIN)/pip install -q 'setuptools>=77' wheel
	$(BIN)/pip install -q --no-build-isolation -e . $(foreach p,$(PLUGIN_DIRS),-e $(dir $(p)))

install-test: install
	$(BIN)/pip install -q --no-build-isolation -e '.[test]' $(foreach p,$(PLUGIN_DIRS),-e $(dir $(p)))

guest: install
	$(BIN)/pyv86 guest build

# the default machine's network is passt (user-mode networking); install it when missing
passt:
	@command -v passt >/dev/null 2>&1 || { \
	    echo "make: installing Debian's passt (user-mode networking for the default machine)"; \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get install -y -q --no-install-recommends passt >/dev/null; }

run: guest passt
	$(BIN)/pyv86 run $(MACHINE)

test: install-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
