# mmtrack: `make demo` sets everything up and runs the embedded study; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_INDEX ?=  # e.g. PyTorch's CPU-only wheel index, for a venv without the CUDA libraries (see README)
export MMTRACK_TRACKING_DIR ?= $(CURDIR)/tracking

.PHONY: setup demo test test-unit lint bench server clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/pip install --quiet 'torch<=2.14.1' 'torchvision<=0.29.1' --index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded default: sweep the digits-skewed study (45 runs, all interventions), then print
# the multiplicity sheets, their summary and the model-selection experiment.
demo: $(STAMP)
	$(BIN)/mmtrack sweep studies/digits-skewed.yaml --workers 2
	$(BIN)/mmtrack sheet --experiment digits-skewed --metric acc --metric acc/group/skew/gs-minority \
		--metric acc/ood/digits-warped --metric acc/output_noise/5 --metric acc/pgd_linf/0.005 --figure outputs/sheets
	$(BIN)/mmtrack sheet --experiment digits-skewed --summary
	$(BIN)/mmtrack select --experiment digits-skewed \
		--by acc/group/skew/gs-minority,acc/ood/digits-warped,acc/output_noise/5,acc/pgd_linf/0.005 --top 75,50 \
		--unseen acc/group/color/gray,acc/group/skew/color-minority,acc/input_noise/1,acc/pgd_linf/0.01 \
		--figure outputs/selection
	$(BIN)/mmtrack report --experiment digits-skewed --out outputs
	@echo "Open outputs/report.html (one page: design, summary, sheets, selection, prediction multiplicity);"
	@echo "browse every run: make server, then the link the sweep printed (the model-training view)"

test: $(STAMP)
	$(BIN)/pytest -q

# The analysis and report layers alone (no torch, no MLflow needed): seconds.
test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check mmtrack tests benchmarks
	$(BIN)/ruff format --check mmtrack tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_interventions.py
	$(BIN)/python benchmarks/bench_stacked.py
	$(BIN)/python benchmarks/bench_study.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_sheet.py
	$(BIN)/python benchmarks/bench_report.py

server: $(STAMP)
	$(BIN)/mmtrack server

clean:
	rm -rf $(VENV) outputs tracking/mlflow.db tracking/artifacts tracking/locks tracking/cache
