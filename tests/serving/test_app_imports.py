"""What a replica imports before its deployment runs: every Ray Serve replica imports serving/app.py (Ray finds
each deployment's class there), so Presidio and spaCy (~180 MB resident) wait for the replicas that scan, and
torch for those that run a model (the Generator; the Gateway's guard brings it through spaCy)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, sys
import finserve.serving.app
heavy = sorted(m for m in ("presidio_analyzer", "presidio_anonymizer", "spacy", "torch", "transformers") if m in sys.modules)
from finserve.serving.guard import GuardConfigError, PIIGuard, GuardResult
from finserve.serving.guard.engine import GuardResult as FromEngine
from finserve.serving.intent import IntentClassifier, HeadScores
from finserve.serving.intent.classifier import HeadScores as FromClassifier
print(json.dumps({"heavy": heavy, "guard": PIIGuard.__module__, "error": GuardConfigError.__name__,
                  "same_result": GuardResult is FromEngine and HeadScores is FromClassifier,
                  "intent": IntentClassifier.__module__, "after": "presidio_analyzer" in sys.modules}))
"""


def test_importing_the_app_leaves_presidio_spacy_and_torch_to_the_replicas_that_use_them() -> None:
    proc = subprocess.run([sys.executable, "-P", "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {
        "heavy": [],
        "guard": "finserve.serving.guard.engine",  # still there when asked for, loaded then
        "error": "GuardConfigError",
        "same_result": True,
        "intent": "finserve.serving.intent.classifier",
        "after": True,
    }
