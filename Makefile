# Both targets set up what they need on a fresh Debian 12 machine (as root).
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
CCROLLOUT := $(VENV)/bin/ccrollout

.PHONY: setup demo test unit lab-down bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	$(PY) -m pytest -ra $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest -ra tests/unit $(PYTEST_ARGS)

lab-down: setup
	$(CCROLLOUT) lab down

bench: setup
	@for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .build-cache .pytest_cache
