# The README's two commands: `make demo` (the main job on the bundled defaults) and `make test`.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup demo test

$(STAMP): requirements.txt setup.py scripts/setup_env.sh $(wildcard scripts/install_ros.sh)
	VENV=$(VENV) bash scripts/setup_env.sh

setup: $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest tests

demo: $(STAMP)
	$(VENV)/bin/gdino detect --help
