"""``finserve ingest`` through the real CLI on a small Banking77 CSV (finserve/commands/ingest.py)."""

from __future__ import annotations

import csv
import shutil

import yaml
from netutil import free_port
from typer.testing import CliRunner

from finserve.cli import app
from finserve.serving.retrieval.kb import load_off_topic


def test_ingest_command_builds_then_skips_then_forces(tmp_path, monkeypatch, kb_rows, embedder) -> None:
    data = tmp_path / "banking77.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows(kb_rows)
    config = tmp_path / "serving.yaml"
    config.write_text(
        yaml.safe_dump({"retrieval": {"milvus_uri": str(tmp_path / "milvus.db"), "redis_url": None}})
    )
    monkeypatch.setenv("FINSERVE_BANKING77_CSV", str(data))
    monkeypatch.setenv("FINSERVE_DATA_DIR", str(tmp_path / "var"))
    # Reuse the session's ONNX export (the data dir's cache) instead of exporting again.
    (tmp_path / "var" / "models" / "embedder").mkdir(parents=True)
    shutil.copy(embedder.onnx_path, tmp_path / "var" / "models" / "embedder")
    runner = CliRunner()

    built = runner.invoke(app, ["ingest", "--config", str(config)])
    assert built.exit_code == 0, built.output
    # 50 rows, 20 % held out by the default split: 40 examples are indexed, and the shipped off-topic list.
    off_topic = len(load_off_topic())
    counts = f"built: 77 answers, {40 + off_topic} examples ({off_topic} off-topic)"
    assert counts in built.output

    again = runner.invoke(app, ["ingest", "--config", str(config)])
    assert again.exit_code == 0 and "unchanged" in again.output

    forced = runner.invoke(app, ["ingest", "--config", str(config), "--force"])
    assert forced.exit_code == 0 and counts in forced.output


def test_ingest_command_reports_an_unreachable_milvus(tmp_path) -> None:

    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump({"retrieval": {"milvus_uri": f"http://127.0.0.1:{free_port()}"}}))
    result = CliRunner().invoke(app, ["ingest", "--config", str(config)])
    assert result.exit_code == 2 and "Milvus unavailable" in result.output
