# The two commands a fresh machine needs (README):
#   make demo   run a sample batch job end to end on the embedded defaults
#   make test   run the whole test suite
# Both create .venv and install orca with what they need first: the demo only the CPU
# engine extra, the tests also the dev extra (moto, SkyPilot for template checks, pytest,
# Playwright) and Debian's chromium for the dashboard's browser tests (via apt-get, as root,
# only when it is missing; Playwright's own browser download is not used).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CHROMIUM ?= /usr/bin/chromium

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

$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make: the dashboard browser tests need chromium: run 'sudo apt-get install chromium' or set CHROMIUM=/path/to/chromium" >&2; \
		exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

install: $(VENV)/.orca-dev

demo: $(VENV)/.orca-cpu
	$(VENV)/bin/orca submit sample_jobs/chat.jsonl --deadline 1h --wait

test: $(VENV)/.orca-dev $(CHROMIUM)
	ORCA_TEST_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q -ra tests

clean:
	rm -rf $(VENV) build *.egg-info
