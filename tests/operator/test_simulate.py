"""`finserve rollout simulate`: the shipped examples give the documented results, and the timeline
rules (last point at or before t, no data before the first point, optional requests, commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mro_testkit import make_spec
from typer.testing import CliRunner

from finserve.cli import app
from finserve.operator import api
from finserve.operator.simulate import Timeline, simulate

EXAMPLES = Path(api.__file__).parent / "examples"


def run_cli(metrics: str, rollout: str = "rollout.yaml"):
    result = CliRunner().invoke(
        app,
        [
            "rollout",
            "simulate",
            "--rollout",
            str(EXAMPLES / rollout),
            "--metrics",
            str(EXAMPLES / metrics),
        ],
    )
    return result, [json.loads(line) for line in result.output.splitlines()]


def test_healthy_example_succeeds():
    result, lines = run_cli("healthy.yaml")
    assert result.exit_code == 0
    assert lines[-1] == {"result": "Succeeded"}
    assert [ln["outcome"] for ln in lines[:3]] == ["Inconclusive"] * 3  # too few requests at 5%
    assert sorted({ln["canaryWeight"] for ln in lines[:-1]}) == [5, 25, 50, 100]
    assert all(
        set(ln) == {"t", "phase", "step", "canaryWeight", "failedChecks", "outcome"} for ln in lines[:-1]
    )


def test_error_spike_example_fails():
    result, lines = run_cli("error-spike.yaml")
    assert result.exit_code == 1
    assert lines[-1] == {"result": "Failed"}
    failed = [ln for ln in lines[:-1] if ln["outcome"] == "Failed"]
    assert failed[0]["t"] >= 720  # the spike starts at 12 minutes
    assert lines[-2] == {
        "t": failed[0]["t"] + 60,
        "phase": "Failed",
        "step": failed[0]["step"],
        "canaryWeight": 0,
        "failedChecks": 2,
        "outcome": "Failed",
    }


def test_answer_gated_example_passes_both_evaluations_and_the_shadow_phase():
    result, lines = run_cli("answers-pass.yaml", "gated-rollout.yaml")
    assert result.exit_code == 0 and lines[-1] == {"result": "Succeeded"}
    assert lines[0]["event"] == "EvaluationRetried"  # the first Job failed: an Error, retried
    gates = [(ln["evaluation"], ln["attempt"], ln["outcome"]) for ln in lines if "evaluation" in ln]
    assert gates == [("BeforeTraffic", 2, "Successful"), ("BeforePromotion", 1, "Successful")]
    shadow = [ln for ln in lines if ln.get("kind") == "Shadow"]
    assert shadow and all(ln["canaryWeight"] == 0 for ln in shadow[:-1])  # 0 % live until shadow passes
    live_weights = [ln["canaryWeight"] for ln in lines if "step" in ln and "kind" not in ln]
    assert sorted(set(live_weights)) == [5, 25, 50, 100]


def test_answer_regression_example_fails_at_the_gate_before_promotion():
    result, lines = run_cli("answers-regress.yaml", "gated-rollout.yaml")
    assert result.exit_code == 1 and lines[-1] == {"result": "Failed"}
    verdict = lines[-2]
    assert (verdict["evaluation"], verdict["outcome"], verdict["canaryWeight"]) == (
        "BeforePromotion",
        "Failed",
        0,
    )
    assert "answer_accuracy 0.825 < stable 0.84 - 0.005" in verdict["message"]
    assert max(ln["canaryWeight"] for ln in lines[:-1]) == 50  # never routed 100 %


async def test_an_evaluation_job_without_an_entry_times_out():
    spec = make_spec(
        {
            "steps": [100],
            "evaluation": {
                "goldenSet": {"pvc": {"claimName": "d", "path": "g.csv"}},
                "timeout": "2m",
                "beforePromotion": False,
            },
        }
    )
    lines = await collect(spec, Timeline.model_validate({"series": {}}))
    assert lines[-1] == {"result": "Failed"}
    assert lines[-2]["outcome"] == "Error" and "timed out after 2m" in lines[-2]["message"]


def test_docs_show_the_real_output():
    docs = (Path(api.__file__).resolve().parent.parent / "docs" / "operator.md").read_text()
    for example, rollout in (
        ("healthy.yaml", "rollout.yaml"),
        ("error-spike.yaml", "rollout.yaml"),
        ("answers-regress.yaml", "gated-rollout.yaml"),
    ):
        _, lines = run_cli(example, rollout)
        for line in (lines[0], lines[-2], lines[-1]):
            assert json.dumps(line) in docs, f"docs/operator.md does not show {example}'s output line {line}"


def test_timeline_reading_rules():
    timeline = Timeline.model_validate(
        {
            "series": {
                "m": [
                    {"at": "2m", "value": 2},
                    {"at": "1m", "value": 1},
                    {"at": "3m", "value": None},
                    {"at": "4m", "error": "down"},
                ]
            }
        }
    )
    assert timeline.reading("m", 30).value is None and timeline.reading("m", 30).error is None
    assert timeline.reading("m", 60).value == 1
    assert timeline.reading("m", 119).value == 1
    assert timeline.reading("m", 120).value == 2
    assert timeline.reading("m", 200).value is None
    assert timeline.reading("m", 300).error == "down"
    assert timeline.reading("absent", 0) is None


async def collect(spec, timeline):
    return [line async for line in simulate("r", spec, timeline)]


@pytest.mark.parametrize("requests", [None, 1000])
async def test_requests_series_is_optional(requests):
    spec = make_spec({"steps": [50, 100], "stepInterval": "0s", "analysis": {"minRequests": 10}})
    series = {
        "error-rate": [{"at": "0s", "value": 0.0}],
        "latency-p95": [{"at": "0s", "value": 1}],
        "pii-output": [{"at": "0s", "value": 0}],
        "intent-quality": [{"at": "0s", "value": 0.99}],
    }
    if requests is not None:
        series["requests"] = [{"at": "0s", "value": requests}]
    lines = await collect(spec, Timeline.model_validate({"series": series}))
    assert lines[-1] == {"result": "Succeeded"}


async def test_commands_in_the_timeline_pause_and_resume():
    spec = make_spec({"steps": [50, 100], "stepInterval": "0s", "analysis": {"minRequests": 0}})
    good = [{"at": "0s", "value": 0}]
    timeline = Timeline.model_validate(
        {
            "series": {
                "error-rate": good,
                "pii-output": good,
                "latency-p95": good,
                "intent-quality": [{"at": "0s", "value": 1}],
            },
            "commands": [{"at": "30s", "command": "pause"}, {"at": "1h", "command": "resume"}],
        }
    )
    lines = await collect(spec, timeline)
    assert lines[0]["t"] == 3660  # no check while paused; the first runs a minute after resuming
    assert lines[-1] == {"result": "Succeeded"}
