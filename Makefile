# Two commands: `make demo` and `make test` (both set up .venv first if needed).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test data libero roadmap-smoke releases clean-venv

setup: $(STAMP) data libero

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required: install python3.11 or run 'make PYTHON=/path/to/python3.11 setup'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev]'
	@touch $(STAMP)

# Fashion-MNIST ships as a Debian package; install it where we are root with apt, else explain.
data:
	@bash scripts/get_data.sh

# Off-screen GL for LIBERO (libegl1, libgl1-mesa-dri, libosmesa6) where we are root with apt, else explain.
libero: $(STAMP)
	@bash scripts/setup_libero.sh

demo: setup
	$(PY) -m phase0_diffusion.demo

test: setup
	$(PY) -m pytest

# Every phase's main pipeline at smoke scale, chained through the resolver (one line per phase).
roadmap-smoke: setup
	$(PY) scripts/roadmap_smoke.py

# Train the cpu-profile models and export them to releases/ (hours; see scripts/make_releases.sh).
releases: setup
	PY=$(PY) bash scripts/make_releases.sh

clean-venv:
	rm -rf $(VENV)
