import os
import sys
from pathlib import Path

# dtype "auto" would choose bfloat16 on some CPUs and not others (perception.precision): the suite's figures
# must be the same on every machine, so auto means float32 here; tests of auto itself unset this.
os.environ.setdefault("GDINO_AUTO_DTYPE", "float32")

# Test helpers (tests/reference_models.py) import as plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
