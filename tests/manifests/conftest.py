"""The manifest tests share the chart tests' tool helpers (tests/charts/k8s_tooling.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "charts"))
