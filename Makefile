# Two commands do everything on a fresh machine:
#   make demo   - build .venv (and system packages), run the default recipe
#   make test   - build .venv if missing, run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the recipes read their embedded datasets from (DESIGN.md, data table).
APT_PACKAGES ?= dataset-fashion-mnist wordnet-base apertium apertium-eng-spa espeak-ng
PYTEST_ARGS ?=

.PHONY: setup system-packages demo test bench lock clean

setup: $(STAMP) system-packages

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Installs what is missing, via apt-get where it exists; a failure only warns,
# because code that needs a package names it in its own error.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "note: no apt-get; install yourself:$$missing"; exit 0; fi; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	echo "installing system packages:$$missing"; \
	( $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null ) \
	  || echo "warning: could not install$$missing; recipes that need them will say so"

demo: setup
	$(PY) bench/backbone.py

test: setup
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

bench: setup
	$(PY) bench/backbone.py

# Re-pin the dev environment from what .venv holds now.
lock: $(STAMP)
	( echo "# Pinned dev/CI environment (pip constraints). Regenerate: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^mmformer' ) > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
