"""Replicas that only scan: the guard's libraries imported without torch and transformers (serving/scan_only.py)
find exactly what they find with them, and the process never loads either. Each side runs in a fresh interpreter
(this one imported torch long ago)."""

from __future__ import annotations

import json
import subprocess
import sys

TEXTS = [
    "My card is 4111 1111 1111 1111, expiry 09/27, and my name is John Smith.",
    "Call me on +44 20 7946 0958 or 07700 900123, email jane.doe@example.co.uk",
    "IBAN GB82 WEST 1234 5698 7654 32, sort code 12-34-56, account 12345678",
    "Maria García moved to 221B Baker Street, London NW1 6XE last week",
    "My SSN is 078-05-1120 and my US number (212) 555-0199",
    "Nothing personal here: what is the exchange rate for euros?",
]

PROBE = r"""
import json, sys
from finserve.serving.app import pii_guard
from finserve.serving.guard.config import GuardConfig
guard = pii_guard(GuardConfig(), scan_only=sys.argv[1] == "1")
results = [guard.scan(text).model_dump(mode="json") for text in json.loads(sys.argv[2])]
print(json.dumps({"results": results, "loaded": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def scan(scan_only: bool) -> dict:
    proc = subprocess.run(
        [sys.executable, "-P", "-c", PROBE, "1" if scan_only else "0", json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_scan_only_guard_finds_what_the_full_one_does_without_torch_or_transformers() -> None:
    lean, full = scan(True), scan(False)
    assert lean["loaded"] == []
    assert lean["results"] == full["results"]
    found = {f["type"] for r in lean["results"] for f in r["findings"]}
    assert {"CREDIT_CARD", "PHONE_NUMBER", "PERSON", "EMAIL_ADDRESS", "IBAN_CODE"} <= found  # it did scan


BLOCK = r"""
import importlib, json, sys
import json as already
from finserve.serving.scan_only import without
with without(("torch", "json")):
    try:
        import torch
        inside = "imported"
    except ImportError:
        inside = "ImportError"
    still = importlib.import_module("json") is already  # imported before: left alone
import torch
print(json.dumps({"inside": inside, "still": still, "after": torch.__name__}))
"""


def test_without_blocks_only_while_inside_and_only_what_was_not_imported() -> None:
    proc = subprocess.run([sys.executable, "-P", "-c", BLOCK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "inside": "ImportError",
        "still": True,
        "after": "torch",
    }


def test_a_spacy_pipeline_on_torch_keeps_torch(tmp_path) -> None:
    """en_core_web_trf and its kind run on torch: their replicas import everything (read from meta.json; what
    cannot be read counts as on torch, since blocking is only an optimisation)."""
    from finserve.serving.guard.config import GuardConfig
    from finserve.serving.scan_only import guard_runs_on_torch

    def folder(name: str, meta: dict | None) -> str:
        path = tmp_path / name
        path.mkdir()
        if meta is not None:
            (path / "meta.json").write_text(json.dumps(meta))
        return str(path)

    cases = {
        folder("cnn", {"pipeline": ["tok2vec", "ner"]}): False,
        folder("trf", {"pipeline": ["transformer", "ner"]}): True,
        folder("curated", {"components": ["curated_transformer", "ner"]}): True,
        folder("req", {"pipeline": ["ner"], "requirements": ["spacy-transformers>=1.3,<1.4"]}): True,
        folder("no_meta", None): True,
        "a_package_that_is_not_installed": True,
    }
    assert not guard_runs_on_torch(GuardConfig())  # patterns only: the default
    for model, on_torch in cases.items():
        config = GuardConfig(spacy_model=model)
        assert guard_runs_on_torch(config) is on_torch, model
