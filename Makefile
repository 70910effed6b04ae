# gensr: set-up commands for a fresh machine (see README.md):
#   make demo       install, then upscale the bundled sample image with the shipped default model
#   make test       install with the dev extras and the browser-test tools, then run the test suite
#   make web-demo   install with the web demo's extra (Gradio), then serve `gensr demo` on http://127.0.0.1:7860/
#
# Where it installs: into the active virtual environment ($VIRTUAL_ENV), or into PYTHON=... if you give one;
# otherwise into a virtual environment of its own, .venv, created with BOOTSTRAP (python3). System Pythons of
# Debian 12 / Ubuntu 23.04+ refuse `pip install` outside a virtual environment (PEP 668); .venv avoids that.
BOOTSTRAP ?= python3
VENV ?= .venv
ifeq ($(origin PYTHON), undefined)
  ifdef VIRTUAL_ENV
    PYTHON := python
  else
    PYTHON := $(VENV)/bin/python
    NEED_VENV := $(VENV)/bin/python
  endif
endif
# torch is installed only when none is importable, as `pip install $(TORCH_SPEC)`, from $(TORCH_INDEX) when set.
# From PyPI on Linux x86_64 that is the CUDA build (several GB); for the CPU build use
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
# The browser test's driver: the Playwright *Python package* only. It drives Debian's /usr/bin/chromium;
# `playwright install` (its own browser download) is never run.
BROWSER_DRIVER_SPEC ?= playwright>=1.40
OUT ?= outputs

.PHONY: install install-dev torch browser demo web-demo test lint bench

$(VENV)/bin/python:
	@echo "creating the virtual environment $(VENV) with $(BOOTSTRAP)"
	@$(BOOTSTRAP) -m venv $(VENV) || { echo "error: '$(BOOTSTRAP) -m venv' failed; on Debian/Ubuntu install \
	the python3-venv package, or run make with PYTHON=/path/to/a/python that may pip install"; exit 1; }
	@$(VENV)/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true

torch: $(NEED_VENV)
	@$(PYTHON) -c "import torch" 2>/dev/null || { echo "installing $(TORCH_SPEC) $(TORCH_PIP_ARGS)"; \
	  $(PYTHON) -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS); }

install: torch
	$(PYTHON) -m pip install -q -e .

# dev extras (pytest, ruff), then the optional web-demo extra (gradio) and the browser driver (playwright);
# if those two cannot be installed, the tests that need them skip and say why.
install-dev: torch
	$(PYTHON) -m pip install -q -e ".[dev]"
	$(PYTHON) -m pip install -q -e ".[demo]" "$(BROWSER_DRIVER_SPEC)" \
	  || echo "note: could not install the demo extra or playwright; the web-demo tests will skip"

# Debian's chromium for tests/test_demo_browser.py, installed with apt-get only when /usr/bin/chromium is
# missing and we are root; otherwise (or if apt-get fails) that test skips and says why.
browser:
	@if [ -x /usr/bin/chromium ]; then \
	  echo "browser: /usr/bin/chromium present"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "browser: installing Debian's chromium with apt-get"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "note: apt-get install chromium failed; the browser test will skip"; \
	else \
	  echo "note: /usr/bin/chromium missing (needs root and apt-get to install); the browser test will skip"; \
	fi

# Re-runnable: the previous output is replaced (--overwrite names it).
demo: install
	$(PYTHON) -m gensr upscale src/gensr/assets/sample_lr.png -o $(OUT)/sample_x4.png --overwrite
	@echo "wrote $(OUT)/sample_x4.png (x4 of src/gensr/assets/sample_lr.png with the shipped default model)"

web-demo: install
	$(PYTHON) -m pip install -q -e ".[demo]"
	$(PYTHON) -m gensr demo

# -rs: every skipped test prints its reason (e.g. benchmark data not found: set GENSR_DATASETS)
test: install-dev browser
	$(PYTHON) -m pytest -rs

lint:
	$(PYTHON) -m ruff check src tests benchmarks

bench:
	$(PYTHON) benchmarks/upscale.py
