# The two commands a fresh machine needs (README):
#   make demo   run a sample batch job end to end on the embedded defaults
#   make test   run the whole test suite
# Both create .venv and install orca with what they need first: the demo only the CPU
# engine extra, the tests also the dev extra (moto, SkyPilot for template checks, pytest).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install demo test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.orca-cpu: pyproject.toml setup.py | $(PY)
	$(PY) -m pip install --quiet -e '.[cpu]'
	touch $@

$(VENV)/.orca-dev: pyproject.toml setup.py | $(PY)
	$(PY) -m pip install --quiet -e '.[cpu,dev]'
	touch $@ $(VENV)/.orca-cpu

install: $(VENV)/.orca-dev

demo: $(VENV)/.orca-cpu
	$(VENV)/bin/orca submit sample_jobs/chat.jsonl --deadline 1h --wait

test: $(VENV)/.orca-dev
	$(PY) -m pytest -q -ra tests

clean:
	rm -rf $(VENV) build *.egg-info
