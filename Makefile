# pumpctl — every target creates .venv and installs what it needs, so a fresh machine
# needs only `make demo` or `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Mosquitto is a system package: tests start their own broker on a free loopback port.
# mbpoll (Debian's) is the independent Modbus client the Modbus simulator is checked with.
# Debian's chromium (headless) renders the run reports' HTML pages in the report tests and,
# driven through Debian's chromedriver, runs the dashboard's browser tests (never a browser
# downloaded at test time); where they cannot be installed the dashboard's tests skip.
system-deps:
	@if ! command -v mosquitto >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1; then \
		echo "installing mosquitto (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	fi
	@if ! command -v mbpoll >/dev/null 2>&1; then \
		echo "installing mbpoll (apt-get)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mbpoll >/dev/null; } \
			|| echo "mbpoll could not be installed: the Modbus interop test (tests/modbus/test_mbpoll.py) will skip"; \
	fi
	@if ! test -x /usr/bin/chromium || ! test -x /usr/bin/chromedriver; then \
		echo "installing chromium and chromium-driver (apt-get)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
			|| echo "chromium could not be installed: browser tests will skip or fail"; \
	fi

# The standard protocol (ketamine 0.5 mg/kg over 40 min, 70 kg) on the embedded simulator,
# at 240x real time so the 40 minutes pass in ten seconds with the live display visible.
DEMO_PLAN := configs/plans/ketamine-0.5mgkg-40min.yaml
demo: $(STAMP)
	$(BIN)/pumpctl plan show $(DEMO_PLAN) --weight 70
	$(BIN)/pumpctl run $(DEMO_PLAN) --weight 70 --sim --speed 240 --journal runs
	$(BIN)/pumpctl runs list --journal runs
	@echo 'pumpctl is in .venv/bin: `source .venv/bin/activate` puts it on PATH'

# One pytest worker per core (pytest-xdist), so CI time falls as cores grow; the ten slowest
# tests are listed at the end. `make test PYTEST_ARGS="-m 'not realtime'"` skips the tests
# that run on the wall clock. pytest exits 5 when it collects nothing: that must fail CI,
# not pass it silently.
#
# The first run is every test, the HIL suite on the default rig (configs/rigs/sim-newera.yaml;
# the `sim_kind` scenarios on every simulator kind). The second runs the rig scenarios (seed
# protocols, the induction course) again on a Modbus rig: `make test MODBUS_RIG=` leaves it
# out. Where that rig's simulator kind is not registered, its tests skip and say why.
PYTEST_ARGS ?=
MODBUS_RIG ?= configs/rigs/sim-isco-d.yaml
RIG_SCENARIOS := hil_tests/test_rig_protocols.py hil_tests/test_rig_course.py
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto --durations=10 $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests were collected"; exit 1; fi; \
	if [ $$rc -ne 0 ] || [ -z "$(MODBUS_RIG)" ]; then exit $$rc; fi; \
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto $(RIG_SCENARIOS) \
		--rig $(MODBUS_RIG) $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests were collected"; exit 1; fi; exit $$rc

# One table of every figure with its target, also written to bench/results.json; about
# 7 minutes on 2 cores (13 when other work keeps them busy). `make bench ROWS=startup,fleet` runs only those rows (`--list` names
# them: `.venv/bin/python bench/run.py --list`).
ROWS ?=
bench: $(STAMP) system-deps
	$(BIN)/python bench/run.py $(if $(ROWS),--rows $(ROWS))

lint: $(STAMP)
	$(BIN)/ruff check pumpctl simulators tests hil_tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
