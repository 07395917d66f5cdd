# `make demo` and `make test` create .venv on first use, install everything, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The torch pin lives in constraints.txt only; every pip call below honours it.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export WANDB_MODE ?= offline

.PHONY: demo test test-audiocraft bench install lock clean

# Installs come from requirements/lock.txt (exact versions, made by `make lock`); torch from the
# pin in constraints.txt, with whatever its build needs (CUDA wheels on a CUDA box, none on CPU).
LOCK := requirements/lock.txt

$(STAMP): pyproject.toml constraints.txt $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	@$(PY) -c "import sys; sys.version_info[:2] == (3, 11) or print('note: $(LOCK) was resolved for CPython 3.11; this is', sys.version.split()[0])"
	$(PY) -m pip install -q $$(grep -E '^(pip|setuptools|wheel)==' $(LOCK))
	$(PY) -m pip install -q -r $(LOCK) torch
	$(PY) -m pip install -q --no-deps -e .
	# Meta's encodec is used only to check .ecdc byte-compatibility; its install_requires names
	# torchaudio, which must never enter this venv, so it comes in without dependencies.
	$(PY) -m pip install -q --no-deps "encodec==0.1.1"
	@if $(PY) -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torchaudio') is None)"; then \
		echo "torchaudio found in $(VENV): removing it (it breaks transformers here)"; \
		$(PY) -m pip uninstall -y -q torchaudio; fi
	touch $(STAMP)

# Re-resolve both locks (this venv's and the AudioCraft test venv's) with the pinned uv; pins that
# still fit are kept. `make lock UPGRADE=1` moves every pin to the newest version that resolves.
lock: $(STAMP)
	$(PY) tools/lock.py --uv $(VENV)/bin/uv $(if $(UPGRADE),--upgrade,)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m workflow.demo

test: $(STAMP)
	$(PY) -m pytest -q

# AudioCraft 1.3.0 trained for real on CPU, in a throw-away venv of its own (see the script).
AC_VENV  := .venv-audiocraft
AC_STAMP := $(AC_VENV)/.installed

$(AC_STAMP): tests/training/audiocraft/make_audiocraft_venv.sh constraints.txt requirements/audiocraft.lock.txt
	PYTHON=$(PYTHON) bash tests/training/audiocraft/make_audiocraft_venv.sh $(AC_VENV)

test-audiocraft: $(STAMP) $(AC_STAMP)
	AUDIOCRAFT_PYTHON=$(CURDIR)/$(AC_VENV)/bin/python $(PY) -m pytest -q -p no:cacheprovider \
		tests/training/audiocraft/test_real_audiocraft.py

bench: $(STAMP)
	$(PY) benchmarks/bench_normalize.py
	$(PY) benchmarks/bench_encode.py
	$(PY) benchmarks/bench_loader.py
	$(PY) benchmarks/bench_build.py
	$(PY) benchmarks/bench_autoencoder.py

clean:
	rm -rf $(VENV) $(AC_VENV) demo_data demo_out .pytest_cache .hypothesis
