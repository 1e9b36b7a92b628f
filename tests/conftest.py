import sys
from pathlib import Path

# Test helpers (tests/reference_models.py) import as plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
