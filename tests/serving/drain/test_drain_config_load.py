"""`finserve drain` reads only the drain section of the serving config (file, FINSERVE_CONFIG, FINSERVE_DRAIN__*
overrides) as `finserve up` reads it, without importing every stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from finserve.serving.config import load_serving_config
from finserve.serving.drain.config import DrainConfig, load_drain_config


def test_the_drain_section_as_finserve_up_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump({"drain": {"grace_s": 20, "poll_s": 0.5}, "gateway": {"http_port": 9000}}))
    environ = {"FINSERVE_CONFIG": str(path), "FINSERVE_DRAIN__MIN_NOT_READY_S": "0", "FINSERVE_POOL": "x"}
    got = load_drain_config(None, environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert (
        got == load_serving_config(None).drain == load_drain_config(None, os.environ)
    )  # as the command calls it
    assert (got.grace_s, got.poll_s, got.min_not_ready_s) == (20, 0.5, 0)
    assert load_drain_config(None, {}) == DrainConfig()  # neither file nor variables: the defaults


def test_a_bad_drain_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump({"drain": {"grace_s": 2, "min_not_ready_s": 5}}))
    with pytest.raises(ValidationError, match="min_not_ready_s"):
        load_drain_config(str(path), {})
    with pytest.raises(ValidationError, match="grace_s"):
        load_drain_config(None, {"FINSERVE_DRAIN__GRACE_S": "-1"})


def test_reading_it_imports_no_stage() -> None:
    """A preStop hook's seconds come out of the pod's grace period: Presidio alone took 4 s to import."""
    code = (
        "import sys; from finserve.serving.drain.config import DrainConfig, load_drain_config; load_drain_config(None, {}); "
        "print(sorted(m for m in ('presidio_analyzer', 'torch', 'ray', 'finserve.serving.guard') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out
