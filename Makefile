# The README's two commands: `make demo` (the main job on the bundled defaults) and `make test`.
# Both set up .venv from nothing first (scripts/setup_env.sh), and again whenever its inputs change.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
# The demo's default input is a generated clip of moving shapes, the kind of scene the bundled model
# knows; the prompt names three of its objects and one that is absent. Any video works:
#   make demo DEMO_VIDEO=/usr/share/doc/opencv-doc/examples/data/vtest.avi DEMO_PROMPT="a person ." DEMO_WEIGHTS=DIR
DEMO_OUT ?= out
DEMO_VIDEO ?= $(DEMO_OUT)/demo_scene.mp4
DEMO_PROMPT ?= blue cross . yellow circle . green star . red heart .
DEMO_WEIGHTS ?=

.PHONY: setup demo test test-isa test-kilted ops

$(STAMP): requirements.txt setup.py scripts/setup_env.sh scripts/install_ros.sh
	VENV=$(VENV) bash scripts/setup_env.sh

setup: $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest tests

# The numeric tests (parity, batched against one by one) again on other CPU kernels, since oneDNN, MKL and
# ATen pick theirs per instruction set: as a CPU without AVX-512 runs them, then with F.linear in place of
# oneDNN's linear. CI runs this after `make test`; each run takes about 30 s on 2 idle cores, a third of it
# the slow full-size parity test (`-m "numeric and not slow"` leaves it out).
NUMERIC_TESTS := $(PYTHON) -m pytest tests -m numeric
# torch.compile's on-disk kernels are not keyed by ATEN_CPU_CAPABILITY: loaded under another one they fail
# ("tuple args required"), so the AVX2 run compiles into a cache of its own.
test-isa: $(STAMP)
	TORCHINDUCTOR_CACHE_DIR=$${TMPDIR:-/tmp}/gdino-inductor-avx2 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 \
		$(NUMERIC_TESTS)
	GDINO_ONEDNN_LINEAR=0 $(NUMERIC_TESTS)

# The ROS tests again on ROS 2 Kilted, in a venv of its own (scripts/setup_kilted.sh: the same requirements,
# Kilted's wheels and vision_msgs built against them), since a venv holds one ROS distribution only.
KILTED_VENV ?= .venv-kilted
KILTED_STAMP := $(KILTED_VENV)/.setup-stamp
$(KILTED_STAMP): requirements.txt setup.py scripts/setup_env.sh scripts/install_ros.sh scripts/setup_kilted.sh
	VENV=$(KILTED_VENV) bash scripts/setup_kilted.sh

test-kilted: $(KILTED_STAMP)
	$(KILTED_VENV)/bin/python -m pytest $(wildcard tests/test_ros_*.py)

demo: $(STAMP)
	mkdir -p $(DEMO_OUT)
	test -f "$(DEMO_VIDEO)" || $(VENV)/bin/gdino demo-clip $(DEMO_VIDEO)
	$(VENV)/bin/gdino video "$(DEMO_VIDEO)" --prompt "$(DEMO_PROMPT)" $(if $(DEMO_WEIGHTS),--weights $(DEMO_WEIGHTS)) \
		--output $(DEMO_OUT)/demo.tracked.mp4 --overwrite

# Rebuild the native deformable-attention op in place (after editing perception/ops/csrc or upgrading
# torch). TORCH_CUDA_ARCH_LIST=8.7 (say) limits the CUDA build to your GPU.
ops: $(STAMP)
	$(PYTHON) setup.py build_ext --inplace
