# Two commands for everything: `make train` (set up + the main job) and `make test` (set up + the whole test suite).
# The virtual environment sees system site-packages so that a preinstalled torch (Colab, a CUDA box) is kept;
# only where no torch imports do we install the CPU wheel torch==2.13.0 (pip finds it locally on our machines).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: setup train test unit notebooks lint refresh-notebooks bench clean

$(BIN)/tvgkit: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_CPU)"
	$(BIN)/pip install -q -e ".[dev,pretrained,vision]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(BIN)/tvgkit

train: setup
	$(BIN)/tvgkit train

lint: setup
	$(BIN)/ruff check .

unit: setup
	$(BIN)/python -m pytest tests -q

notebooks: setup
	TQDM_DISABLE=1 MPLBACKEND=Agg $(BIN)/python -m pytest --nbval notebooks --nbval-sanitize-with notebooks/sanitize.cfg -q

test: lint unit notebooks

# Re-execute every notebook in place (quick size) and store outputs with execution counts.
refresh-notebooks: setup
	TQDM_DISABLE=1 MPLBACKEND=Agg $(BIN)/python -m tvgkit.notebooks $(NOTEBOOKS)

bench: setup
	$(BIN)/python benchmarks/notebook_times.py

clean:
	rm -rf $(VENV) runs .pytest_cache
