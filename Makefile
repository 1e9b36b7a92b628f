# The README's two commands: `make demo` (the main job on the bundled defaults) and `make test`.
# Both set up .venv from nothing first (scripts/setup_env.sh), and again whenever its inputs change.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
DEMO_VIDEO ?= /usr/share/doc/opencv-doc/examples/data/vtest.avi
DEMO_PROMPT ?= a person .
# Until a bundled model ships (issue 4), the demo runs a small randomly initialised model and says so.
DEMO_WEIGHTS ?= random:tiny
DEMO_OUT ?= out

.PHONY: setup demo test ops

$(STAMP): requirements.txt setup.py scripts/setup_env.sh scripts/install_ros.sh
	VENV=$(VENV) bash scripts/setup_env.sh

setup: $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest tests

demo: $(STAMP)
	mkdir -p $(DEMO_OUT)
	$(VENV)/bin/gdino video $(DEMO_VIDEO) --prompt "$(DEMO_PROMPT)" --weights $(DEMO_WEIGHTS) \
		--end 10 --shortest-edge 480 --longest-edge 640 --output $(DEMO_OUT)/demo.tracked.mp4

# Rebuild the native deformable-attention op in place (after editing perception/ops/csrc or upgrading
# torch). TORCH_CUDA_ARCH_LIST=8.7 (say) limits the CUDA build to your GPU.
ops: $(STAMP)
	$(PYTHON) setup.py build_ext --inplace
