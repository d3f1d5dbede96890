"""The evaluation gate through the real kopf handlers against kmock's emulated Kubernetes API (no API
server can run here). No Job controller or kubelet runs either: the test plays them, writing the
Job's conditions and its pod with the termination message `finserve eval answers` leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mro_testkit import (
    RESOURCE_CM,
    RESOURCE_EVENTS,
    RESOURCE_JOBS,
    RESOURCE_MRO,
    RESOURCE_PODS,
    create,
    fast,
    gated,
    healthy,
    patch,
    report,
    rollout_manifest,
)
from test_handlers import assert_rbac_covers, phase_is

from finserve.contracts import RoutingTable
from finserve.contracts.evaluation import AnswerEvalReport
from finserve.operator.core.plan import evaluation_job_name, steps_hash
from finserve.operator.spec import ModelRolloutSpec
from finserve.operator.status import EvaluationStage

TEMPLATE = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"labels": {"app.kubernetes.io/component": "evaluation"}},
    "spec": {
        "ttlSecondsAfterFinished": 86400,
        "template": {
            "spec": {
                "serviceAccountName": "finserve-serving",
                "containers": [
                    {
                        "name": "eval",
                        "image": "finserve-training:test",
                        "command": ["finserve", "eval"],  # replaced: the operator says what to run
                        "env": [{"name": "FINSERVE_REGISTRY", "value": "/mnt/registry"}],
                    }
                ],
            }
        },
    },
}


@pytest.fixture()
def job_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(TEMPLATE))
    monkeypatch.setenv("FINSERVE_OPERATOR__EVAL_JOB_TEMPLATE", str(path))
    return path


def manifest(**evaluation: Any) -> dict[str, Any]:
    return rollout_manifest(strategy=fast(evaluation=gated(**{"beforePromotion": False, **evaluation})))


def job_name(
    body: dict[str, Any], attempt: int = 1, stage: EvaluationStage = EvaluationStage.BEFORE_TRAFFIC
) -> str:
    spec = ModelRolloutSpec.model_validate(body["spec"])
    return evaluation_job_name("bank", steps_hash(spec), stage, attempt)


async def play_job(
    kube: Any,
    name: str,
    result: AnswerEvalReport | None = None,
    message: str | None = None,
    failed: str | None = None,
) -> None:
    """Be the Job controller and the kubelet: a pod that ended, then the Job's condition."""
    if failed is None:
        terminated: dict[str, Any] = {"exitCode": 0, "reason": "Completed"}
        if result is not None or message is not None:
            terminated["message"] = message if message is not None else result.summary().model_dump_json()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-x7k2p", "namespace": "default", "labels": {"batch.kubernetes.io/job-name": name}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "eval", "image": "finserve-training:test"}]},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {"name": "eval", "image": "finserve-training:test", "imageID": "", "ready": False,
                     "restartCount": 0, "state": {"terminated": terminated}}
                ],
            },
        }  # fmt: skip
        await create(kube, RESOURCE_PODS, pod)
        condition = {"type": "Complete", "status": "True"}
    else:
        condition = {"type": "Failed", "status": "True", "reason": failed, "message": f"the Job {failed}"}
    await patch(
        kube, RESOURCE_JOBS, "default", name, {"status": {"conditions": [condition]}}, subresource="status"
    )


def weights(kube: Any) -> list[int]:
    return [
        RoutingTable.from_configmap_data(v["data"]).routes["finserve-banking"].canary_weight
        for v in kube.objects[RESOURCE_CM, "default", "finserve-routing"].history
        if v is not None
    ]


def events(kube: Any) -> set[str]:
    return {e["reason"] for (res, _, _), e in kube.objects.items() if res == RESOURCE_EVENTS}


async def test_the_gate_runs_the_eval_job_and_a_passing_report_opens_traffic(
    kube, fake_prometheus, run_operator, job_template
):
    prom, _ = fake_prometheus
    healthy(prom)
    body = manifest(timeout="20m", beforePromotion=True)
    name, last = job_name(body), job_name(body, stage=EvaluationStage.BEFORE_PROMOTION)
    async with run_operator() as runner:
        mro = await create(kube, RESOURCE_MRO, body)
        job = await kube.wait_for(RESOURCE_JOBS, "default", name, lambda o: o is not None)
        waiting = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Evaluating"))
        assert weights(kube) == [0]  # nothing routed to the canary while the Job runs
        assert waiting["status"]["evaluation"]["job"] == name
        await play_job(kube, name, report(answer_accuracy=0.842))
        # Healthy at 50 %: the second gate holds the weight there until its Job reports.
        await kube.wait_for(RESOURCE_JOBS, "default", last, lambda o: o is not None)
        held = await kube.wait_for(
            RESOURCE_MRO,
            "default",
            "bank",
            lambda o: phase_is("Evaluating")(o) and o["status"]["evaluation"]["stage"] == "BeforePromotion",
        )
        assert "outcome" not in held["status"]["evaluation"]  # the first gate's verdict is not inherited
        assert weights(kube) == [0, 50] and held["status"]["canaryWeight"] == 50
        await play_job(kube, last, report(answer_accuracy=0.842))
        done = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", runner.output
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == [
        "finserve", "eval", "answers", "--data", "/var/run/finserve/golden/golden.csv",
        "--adapter", "banking77@1.1.0", "--baseline", "banking77@1.0.0",
        "--json", "--termination-log", "/dev/termination-log",
    ]  # fmt: skip
    assert container["image"] == "finserve-training:test"  # from the chart's template
    assert {"name": "golden-set", "mountPath": "/var/run/finserve/golden", "readOnly": True} in container[
        "volumeMounts"
    ]
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"] == {"name": "golden", "items": [{"key": "golden.csv", "path": "golden.csv"}]}
    assert (job["spec"]["activeDeadlineSeconds"], job["spec"]["backoffLimit"]) == (1200, 0)
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("ModelRollout", "bank", mro["metadata"]["uid"])
    evaluation = done["status"]["evaluation"]
    assert (evaluation["stage"], evaluation["outcome"], evaluation["attempt"]) == (
        "BeforePromotion",
        "Successful",
        1,
    )
    assert evaluation["report"]["candidate"]["answer_accuracy"] == 0.842
    assert {c["metric"]: c["outcome"] for c in evaluation["checks"]} == {
        "answer_accuracy": "Successful",
        "groundedness": "Successful",
        "pii_leaks": "Successful",
    }
    assert weights(kube) == [0, 50, 100, 0]
    assert {"EvaluationStarted", "EvaluationPassed", "Promoted"} <= events(kube)
    assert_rbac_covers(kube)


@pytest.mark.parametrize(
    ("outcome", "expect"),
    [
        ({"result": report(answer_accuracy=0.80)}, ("Failed", "answer_accuracy 0.8 < stable 0.84 - 0.005")),
        ({"failed": "BackoffLimitExceeded"}, ("Error", "failed: BackoffLimitExceeded")),
        ({"failed": "DeadlineExceeded"}, ("Error", "timed out after 30m")),
        ({}, ("Error", "the pod left no termination message")),
        ({"message": "Traceback (most recent call last)"}, ("Error", "not an evaluation report")),
    ],
    ids=["margin missed", "job failed", "job timed out", "no termination message", "message not a report"],
)
async def test_a_gate_that_does_not_pass_fails_the_rollout_at_weight_zero(
    kube, fake_prometheus, run_operator, job_template, outcome, expect
):
    prom, _ = fake_prometheus
    healthy(prom)
    body = manifest()
    name = job_name(body)
    async with run_operator() as runner:
        await create(kube, RESOURCE_MRO, body)
        await kube.wait_for(RESOURCE_JOBS, "default", name, lambda o: o is not None)
        await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Evaluating"))
        await play_job(kube, name, **outcome)
        failed = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Failed", "Succeeded"))
    assert failed["status"]["phase"] == "Failed", runner.output
    evaluation = failed["status"]["evaluation"]
    assert evaluation["outcome"] == expect[0] and expect[1] in evaluation["message"]
    assert set(weights(kube)) == {0}  # the canary never got a request
    assert ("EvaluationFailed" if expect[0] == "Failed" else "EvaluationError") in events(kube)
    assert failed["status"]["canaryWeight"] == 0 and "Traceback" not in runner.output
    assert_rbac_covers(kube)


async def test_an_error_with_on_error_retry_runs_a_second_job(
    kube, fake_prometheus, run_operator, job_template
):
    prom, _ = fake_prometheus
    healthy(prom)
    body = manifest(onError="retry", retryLimit=1)
    first, second = job_name(body, 1), job_name(body, 2)
    async with run_operator() as runner:
        await create(kube, RESOURCE_MRO, body)
        await kube.wait_for(RESOURCE_JOBS, "default", first, lambda o: o is not None)
        await play_job(kube, first, failed="BackoffLimitExceeded")
        await kube.wait_for(RESOURCE_JOBS, "default", second, lambda o: o is not None)
        retrying = await kube.wait_for(
            RESOURCE_MRO,
            "default",
            "bank",
            lambda o: ((o or {}).get("status") or {}).get("evaluation", {}).get("attempt") == 2,
        )
        assert "outcome" not in retrying["status"]["evaluation"]  # the first attempt's Error is not inherited
        await play_job(kube, second, report())
        done = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", runner.output
    assert "EvaluationRetried" in events(kube)


async def test_without_a_job_template_the_gate_is_an_error_not_a_pass(
    kube, fake_prometheus, run_operator, monkeypatch
):
    prom, _ = fake_prometheus
    healthy(prom)
    monkeypatch.delenv("FINSERVE_OPERATOR__EVAL_JOB_TEMPLATE", raising=False)
    async with run_operator():
        await create(kube, RESOURCE_MRO, manifest())
        failed = await kube.wait_for(RESOURCE_MRO, "default", "bank", phase_is("Failed", "Succeeded"))
    assert failed["status"]["phase"] == "Failed"
    assert "FINSERVE_OPERATOR__EVAL_JOB_TEMPLATE" in failed["status"]["evaluation"]["message"]
    assert set(weights(kube)) == {0}
    assert not [k for k in kube.objects if k[0] == RESOURCE_JOBS]
