# Everything installs into .venv by itself: `make test` and `make demo` work on a fresh machine, from
# the package registries alone (no ../shared needed: tests that read it skip with a reason).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= dev,export,demo,tfds,serving,backends
DEMO_OUT ?= demo_out

.PHONY: install test test-slow test-wheel lint demo demo-web browser clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check spade_tf training export tests scripts

# Headless Chromium for the web demo's browser test, where the machine allows (root + Debian);
# without it that one test is skipped with a reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

# The everyday suite (about 12 minutes on 2 cores); the slow tests run in `make test-slow` (CI runs both).
test: $(STAMP) lint browser
	$(PY) -m pytest -q --durations=15 -m "not slow" tests

# The longest tests: kill -9 + resume, synthesize --backend jax, JAX training resume, distillation, GPU script.
test-slow: $(STAMP)
	$(PY) -m pytest -q --durations=10 -m slow tests

# Builds the wheel + sdist and installs the wheel into a fresh venv outside the checkout (slow: trains 2 steps).
test-wheel: $(STAMP)
	SPADE_TEST_WHEEL=1 $(PY) -m pytest -q tests/test_wheel.py

demo: $(STAMP)
	$(VENV)/bin/spade demo-job --out $(DEMO_OUT)

demo-web: $(STAMP)
	$(VENV)/bin/spade demo --model $(DEMO_OUT)/train --labels $(DEMO_OUT)/labels

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
