# The two commands: `make demo` runs the main job on embedded defaults, `make test` runs the tests.
# Each creates .venv and installs calmon when missing.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-amqtt lint dev

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip setuptools wheel
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/calmon demo

# -n 2 --dist loadfile: most of the suite waits (cameras settling, subprocesses, servers), so two
# workers take a test file each; --durations lists the slowest tests, where the 20-minute budget goes;
# -rs names every skipped test and why (a clone without ../shared/data/scenes skips the scene tests)
PYTEST := $(VENV)/bin/python -m pytest -q -rs -p no:cacheprovider --durations=30 -n 2 --dist loadfile

test: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/dg check defs
	$(PYTEST)

# the same tests on the in-process amqtt broker (what runs where mosquitto is not installed)
test-amqtt: $(STAMP)
	CALMON_TEST_BROKER=amqtt $(PYTEST)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

dev: $(STAMP)
	$(VENV)/bin/calmon dev
