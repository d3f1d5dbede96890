"""`finserve rollout status|pause|resume|promote|abort|wait` against kmock's emulated Kubernetes API
(no real API server can run here). The CLI runs in a thread: it has its own event loop, and the
emulator must keep serving from the test's loop meanwhile."""

from __future__ import annotations

import asyncio
import json

from mro_testkit import RESOURCE_MRO, create, patch, rollout_manifest
from typer.testing import CliRunner

from finserve.cli import app


async def invoke(*args: str):
    return await asyncio.to_thread(CliRunner().invoke, app, ["rollout", *args])


def watching(kube):
    return kube.wait_for_request(lambda r: r.action == kube.action.WATCH and r.resource == RESOURCE_MRO)


async def settle(kube, phase: str, generation_seen: int = 1) -> None:
    await patch(
        kube,
        RESOURCE_MRO,
        "default",
        "bank",
        {"status": {"phase": phase, "observedGeneration": generation_seen, "message": f"it {phase}"}},
        subresource="status",
    )


async def test_commands_set_annotations(kube, kubeconfig):
    await create(kube, RESOURCE_MRO, rollout_manifest())
    result = await invoke("pause", "bank", "-n", "default")
    assert result.exit_code == 0, result.output
    annotations = kube.objects[RESOURCE_MRO, "default", "bank"]["metadata"]["annotations"]
    assert set(annotations) == {"finserve.dev/pause"}
    result = await invoke("resume", "bank")  # namespace from the kubeconfig context
    assert result.exit_code == 0, result.output
    annotations = kube.objects[RESOURCE_MRO, "default", "bank"]["metadata"]["annotations"]
    assert set(annotations) == {"finserve.dev/resume"}  # resume clears pause and the other way round
    for command in ("promote", "abort"):
        assert (await invoke(command, "bank")).exit_code == 0
    assert {"finserve.dev/promote", "finserve.dev/abort"} <= set(
        kube.objects[RESOURCE_MRO, "default", "bank"]["metadata"]["annotations"]
    )


async def test_status_prints_the_rollout(kube, kubeconfig):
    await create(kube, RESOURCE_MRO, rollout_manifest())
    await patch(
        kube,
        RESOURCE_MRO,
        "default",
        "bank",
        {
            "status": {
                "phase": "Progressing",
                "currentStepIndex": 1,
                "canaryWeight": 25,
                "stable": "banking77@1.0.0",
                "canary": "banking77@1.1.0",
                "lastAnalysis": {
                    "time": "2025-01-01T00:01:00Z",
                    "stepIndex": 1,
                    "outcome": "Failed",
                    "requests": 120,
                    "metrics": [
                        {"name": "error-rate", "value": 0.2, "outcome": "Failed", "message": "0.2 > max 0.05"}
                    ],
                },
            }
        },
        subresource="status",
    )
    table = await invoke("status", "bank")
    assert table.exit_code == 0, table.output
    assert "phase Progressing, step 2/4, canary weight 25%" in table.output
    assert "0.2 > max 0.05" in table.output
    await patch(
        kube, RESOURCE_MRO, "default", "bank",
        {"status": {"shadowPercent": 10, "evaluation": {
            "stage": "BeforePromotion", "job": "bank-eval-promotion-0a1b2c3d-1", "attempt": 1,
            "startedAt": "2025-01-01T00:02:00Z", "outcome": "Failed", "message": "answer_accuracy 0.81 < stable 0.84 - 0.005",
            "checks": [{"metric": "answer_accuracy", "candidate": 0.81, "baseline": 0.84, "outcome": "Failed",
                        "message": "0.81 < stable 0.84 - 0.005"}]}}},
        subresource="status",
    )  # fmt: skip
    table = await invoke("status", "bank")
    assert "canary weight 25%, shadow 10%" in table.output
    assert "evaluation BeforePromotion" in table.output and "0.81 < stable 0.84" in table.output
    as_json = await invoke("status", "bank", "-o", "json")
    assert json.loads(as_json.output)["status"]["canaryWeight"] == 25


async def test_unknown_rollout_exits_3(kube, kubeconfig):
    assert (await invoke("status", "nope")).exit_code == 3
    assert (await invoke("abort", "nope")).exit_code == 3


async def test_wait_exits_0_on_success(kube, kubeconfig):
    await create(kube, RESOURCE_MRO, rollout_manifest())
    await patch(
        kube,
        RESOURCE_MRO,
        "default",
        "bank",
        {"status": {"phase": "Progressing", "observedGeneration": 1}},
        subresource="status",
    )
    waiting = asyncio.create_task(invoke("wait", "bank", "--timeout", "60"))
    await watching(kube)  # the result has to arrive through the watch
    await settle(kube, "Succeeded")
    result = await waiting
    assert result.exit_code == 0, result.output
    assert "Succeeded" in result.output


async def test_wait_exits_1_on_failure_and_ignores_a_stale_status(kube, kubeconfig):
    await create(kube, RESOURCE_MRO, rollout_manifest())
    await settle(kube, "Succeeded")  # the previous spec's result...
    await patch(
        kube, RESOURCE_MRO, "default", "bank", {"spec": {"canary": {"version": "1.2.0"}}}
    )  # ...then an edit
    assert kube.objects[RESOURCE_MRO, "default", "bank"]["metadata"]["generation"] == 2
    waiting = asyncio.create_task(invoke("wait", "bank", "--timeout", "60"))
    await watching(kube)
    await settle(kube, "Failed", generation_seen=2)
    result = await waiting
    assert result.exit_code == 1, result.output
    assert "Failed" in result.output


async def test_wait_exits_2_on_timeout(kube, kubeconfig):
    await create(kube, RESOURCE_MRO, rollout_manifest())
    result = await invoke("wait", "bank", "--timeout", "0.5")
    assert result.exit_code == 2


# ---- list, get [--watch], retry, undo, --context (issue 19) ----


async def test_list_shows_each_rollout_with_its_phase_and_weights(kube, kubeconfig):
    assert "no modelrollouts in namespace default" in (await invoke("list")).output
    await create(kube, RESOURCE_MRO, rollout_manifest())
    await create(kube, RESOURCE_MRO, rollout_manifest("cards", model="finserve-cards"))
    await patch(
        kube,
        RESOURCE_MRO,
        "default",
        "bank",
        {
            "status": {
                "phase": "Progressing",
                "currentStepIndex": 1,
                "canaryWeight": 25,
                "stable": "banking77@1.0.0",
                "canary": "banking77@1.1.0",
            }
        },
        subresource="status",
    )
    result = await invoke("list", "-n", "default")
    assert result.exit_code == 0, result.output
    bank = next(line for line in result.output.splitlines() if " bank " in f" {line} ")
    assert bank.split() == [
        "default",
        "bank",
        "finserve-banking",
        "Progressing",
        "2/4",
        "25%",
        "banking77@1.0.0",
        "banking77@1.1.0",
    ]
    assert "finserve-cards" in result.output
    assert "bank" in (await invoke("list", "-A")).output


async def test_get_marks_the_current_step(kube, kubeconfig):
    await create(kube, RESOURCE_MRO, rollout_manifest())
    await patch(
        kube,
        RESOURCE_MRO,
        "default",
        "bank",
        {"status": {"phase": "Progressing", "currentStepIndex": 2, "canaryWeight": 50}},
        subresource="status",
    )
    result = await invoke("get", "bank")
    assert result.exit_code == 0, result.output
    rows = [
        line.replace("│", " ").split() for line in result.output.splitlines() if "%" in line and "│" in line
    ]
    assert rows == [["1", "5%"], ["2", "25%"], ["▶", "3", "50%"], ["4", "100%"]]
    assert (await invoke("get", "nope")).exit_code == 3


async def test_get_watch_follows_until_the_rollout_finishes(kube, kubeconfig):
    await create(kube, RESOURCE_MRO, rollout_manifest())
    await settle(kube, "Progressing")
    watching_cli = asyncio.create_task(invoke("get", "bank", "--watch"))
    await watching(kube)
    await settle(kube, "Succeeded")
    result = await watching_cli
    assert result.exit_code == 0, result.output
    assert "phase Succeeded" in result.output


async def test_retry_sets_its_annotation(kube, kubeconfig):
    await create(kube, RESOURCE_MRO, rollout_manifest())
    result = await invoke("retry", "bank")
    assert result.exit_code == 0, result.output
    assert "finserve.dev/retry" in kube.objects[RESOURCE_MRO, "default", "bank"]["metadata"]["annotations"]


async def test_undo_swaps_stable_and_canary_only_after_success(kube, kubeconfig):
    await create(kube, RESOURCE_MRO, rollout_manifest())
    await settle(kube, "Failed")
    refused = await invoke("undo", "bank")
    assert refused.exit_code == 1 and "only a Succeeded rollout" in refused.output
    await settle(kube, "Succeeded")
    result = await invoke("undo", "bank")
    assert result.exit_code == 0, result.output
    spec = kube.objects[RESOURCE_MRO, "default", "bank"]["spec"]
    assert (spec["stable"]["version"], spec["canary"]["version"]) == ("1.1.0", "1.0.0")
    assert "rolling banking77@1.0.0 back in" in result.output
    # The edit is a new plan: its status is stale until the operator acts on it, so undo cannot run twice.
    again = await invoke("undo", "bank")
    assert again.exit_code == 1


async def test_context_picks_the_kubeconfig_context_and_its_namespace(kube, kubeconfig):
    import yaml

    config = yaml.safe_load(kubeconfig.read_text())
    config["contexts"].append(
        {"name": "other", "context": {"cluster": "kmock", "user": "kmock", "namespace": "team"}}
    )
    config["users"][0]["user"] = {"token": "test-token"}
    config["contexts"][0]["context"]["cluster"] = "nowhere"  # the current context cannot be reached
    config["clusters"].append({"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}})
    kubeconfig.write_text(yaml.safe_dump(config))
    await create(kube, RESOURCE_MRO, rollout_manifest(namespace="team"))
    result = await invoke("status", "bank", "--context", "other")
    assert result.exit_code == 0, result.output
    assert "team/bank" in result.output
    assert (await invoke("pause", "bank", "--context", "other")).exit_code == 0
    assert "finserve.dev/pause" in kube.objects[RESOURCE_MRO, "team", "bank"]["metadata"]["annotations"]
