# gensr: set-up commands for a fresh machine (see README.md):
#   make demo       install, then upscale the bundled sample image with the shipped default model
#   make web-demo   install with the web demo's extra (Gradio), then serve `gensr demo` on http://127.0.0.1:7860/
#   make test       install with the dev extras and the browser-test tools, then run the test suite
PYTHON ?= python3
# The CPU build of torch; an unpinned `torch` can pull a multi-GB CUDA build. Override on GPU machines.
TORCH_SPEC ?= torch==2.13.0
# The browser test's driver: the Playwright *Python package* only. It drives Debian's /usr/bin/chromium;
# `playwright install` (its own browser download) is never run.
BROWSER_DRIVER_SPEC ?= playwright>=1.40
OUT ?= outputs

.PHONY: install install-dev browser demo web-demo test lint bench

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -q -e .

# dev extras (pytest, ruff), then the optional web-demo extra (gradio) and the browser driver (playwright);
# if those two cannot be installed, the tests that need them skip and say why.
install-dev:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_SPEC)"
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

demo: install
	$(PYTHON) -m gensr upscale src/gensr/assets/sample_lr.png -o $(OUT)/sample_x4.png
	@echo "wrote $(OUT)/sample_x4.png (x4 of src/gensr/assets/sample_lr.png with the shipped default model)"

web-demo: install
	$(PYTHON) -m pip install -q -e ".[demo]"
	$(PYTHON) -m gensr demo

test: install-dev browser
	$(PYTHON) -m pytest

lint:
	ruff check src tests benchmarks

bench:
	$(PYTHON) benchmarks/upscale.py
