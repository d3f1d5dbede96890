"""What a replica imports before its deployment runs: every Ray Serve replica imports serving/app.py (Ray finds
each deployment's class there), so Presidio and spaCy (~180 MB resident) must wait for the replicas that scan."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, sys
import finserve.serving.app
heavy = sorted(m for m in ("presidio_analyzer", "presidio_anonymizer", "spacy") if m in sys.modules)
from finserve.serving.guard import GuardConfigError, PIIGuard, GuardResult
from finserve.serving.guard.engine import GuardResult as FromEngine
print(json.dumps({"heavy": heavy, "guard": PIIGuard.__module__, "error": GuardConfigError.__name__,
                  "same_result": GuardResult is FromEngine, "after": "presidio_analyzer" in sys.modules}))
"""


def test_importing_the_app_leaves_presidio_and_spacy_to_the_replicas_that_scan() -> None:
    proc = subprocess.run([sys.executable, "-P", "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {
        "heavy": [],
        "guard": "finserve.serving.guard.engine",  # still there when asked for, loaded then
        "error": "GuardConfigError",
        "same_result": True,
        "after": True,
    }
