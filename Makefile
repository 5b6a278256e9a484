# Two commands do everything on a fresh machine:
#   make demo   - build .venv (and system packages), run the default recipe
#   make test   - build .venv if missing, run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the recipes read their embedded datasets from (DESIGN.md, data table).
APT_PACKAGES ?= dataset-fashion-mnist wordnet-base apertium apertium-eng-spa espeak-ng flite festival festvox-kdlpc16k
PYTEST_ARGS ?= --durations=25

.PHONY: setup system-packages demo test bench lock clean

setup: $(STAMP) system-packages

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
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

# The default recipe end to end: train ViT on Fashion-MNIST, test it, print the metrics and
# write confusion_matrix.png + attention_overlays.png beside the test run's logs.
DEMO_RECIPE ?= tasks/image_classification.yaml
DEMO_DIR ?= runs/demo
demo: setup
	$(VENV)/bin/mmformer fit --config $(DEMO_RECIPE) --trainer.default_root_dir $(DEMO_DIR)
	@ckpt=$$(ls -t $(DEMO_DIR)/version_*/checkpoints/last.ckpt | head -1); \
	$(VENV)/bin/mmformer test --config $(DEMO_RECIPE) --trainer.default_root_dir $(DEMO_DIR) --ckpt_path $$ckpt; \
	out=$$(ls -td $(DEMO_DIR)/version_* | head -1); echo "plots: $$(ls $$out/*.png | tr '\n' ' ')"

test: setup
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

bench: setup
	$(PY) bench/backbone.py
	$(PY) bench/vit.py
	$(PY) bench/generation.py
	$(PY) bench/seq2seq.py

# Re-pin the dev environment from what .venv holds now.
lock: $(STAMP)
	( echo "# Pinned dev/CI environment (pip constraints). Regenerate: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^mmformer' ) > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
