# gensr: two set-up commands for a fresh machine (see README.md):
#   make demo   install, then upscale the bundled sample image with the shipped default model
#   make test   install with the dev extras, then run the test suite
PYTHON ?= python3
# The CPU build of torch; an unpinned `torch` can pull a multi-GB CUDA build. Override on GPU machines.
TORCH_SPEC ?= torch==2.13.0
OUT ?= outputs

.PHONY: install install-dev demo test lint bench

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -q -e .

install-dev:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -q -e ".[dev]"

demo: install
	$(PYTHON) -m gensr upscale src/gensr/assets/sample_lr.png -o $(OUT)/sample_x4.png
	@echo "wrote $(OUT)/sample_x4.png (x4 of src/gensr/assets/sample_lr.png with the shipped default model)"

test: install-dev
	$(PYTHON) -m pytest

lint:
	ruff check src tests benchmarks

bench:
	$(PYTHON) benchmarks/upscale.py
