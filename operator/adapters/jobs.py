"""Evaluation Jobs on Kubernetes: built from the chart's Job template, read back with the report
their pod leaves in its termination message.

The chart renders the template (image, env, registry and config volumes, security contexts,
resources: everything `finserve eval answers` needs in this release) into a ConfigMap that is
mounted into the operator's pod; ``$FINSERVE_OPERATOR__EVAL_JOB_TEMPLATE`` names the file. The operator adds
what belongs to one rollout: name, owner, labels, the command with both adapter versions, the
golden set's volume, the deadline. The file is read when a Job is created, so a chart upgrade
applies to the next Job without a restart.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from finserve.contracts.evaluation import AnswerEvalReport

from ..api import API_VERSION, GROUP, KIND
from ..core.actions import RunEvaluation
from ..core.observations import JobObservation
from ..ports import ObjectRef

CONTAINER = "eval"
"""The template's container that runs the evaluation (else its first container)."""
TERMINATION_LOG = "/dev/termination-log"
GOLDEN_MOUNT = "/var/run/finserve/golden"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set on a Job's pods by the Job controller
REGISTRY_ENV = "FINSERVE_REGISTRY"
# Pod waiting reasons worth naming while the Job "runs": it will not get anywhere by itself.
_STUCK = re.compile(
    r"ErrImagePull|ImagePullBackOff|CreateContainerConfigError|InvalidImageName|CrashLoopBackOff"
)


class TemplateError(ValueError):
    """The Job template file is missing or not a usable Job."""


def load_template(path: str | None) -> dict[str, Any]:
    if not path:
        raise TemplateError(
            "no evaluation Job template: set FINSERVE_OPERATOR__EVAL_JOB_TEMPLATE (the chart does)"
        )
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"evaluation Job template {path}: {exc}") from exc
    containers = (((data or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get("containers")
    if not isinstance(data, dict) or not containers:
        raise TemplateError(f"evaluation Job template {path} is not a Job with a container")
    return data


def _label_value(value: str) -> str:
    return value[:63].rstrip("-_.")


def data_path(action: RunEvaluation) -> tuple[str, dict[str, Any] | None]:
    """(--data argument, golden-set volume or None) for the action's golden set."""
    golden = action.golden_set
    if golden.config_map is not None:
        source = golden.config_map
        volume = {
            "name": "golden-set",
            "configMap": {"name": source.name, "items": [{"key": source.key, "path": source.key}]},
        }
        return f"{GOLDEN_MOUNT}/{source.key}", volume
    if golden.pvc is not None:
        claim = golden.pvc
        volume = {
            "name": "golden-set",
            "persistentVolumeClaim": {"claimName": claim.claim_name, "readOnly": True},
        }
        return f"{GOLDEN_MOUNT}/{claim.path}", volume
    assert golden.registry is not None
    ref = golden.registry
    # Kubernetes expands $(VAR) in a container's command from the container's env: the registry root
    # the template's image is configured with (a path on the registry claim, or a URL).
    return f"$({REGISTRY_ENV})/{ref.adapter}/{ref.version}/{ref.path}", None


def build_job(template: dict[str, Any], action: RunEvaluation, owner: ObjectRef) -> dict[str, Any]:
    job = copy.deepcopy(template)
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    meta = job.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta.update(name=action.job, namespace=owner.namespace)
    labels = {
        "app.kubernetes.io/managed-by": "finserve-operator",
        f"{GROUP}/rollout": _label_value(owner.name),
        f"{GROUP}/evaluation-stage": str(action.stage),
    }
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    if owner.uid:  # deleted with its rollout
        meta["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
            }
        ]
    spec = job.setdefault("spec", {})
    # One pod per Job, so the termination message is unambiguous; retries are the rollout's policy.
    spec.update(backoffLimit=0, activeDeadlineSeconds=max(1, int(action.timeout_seconds)))
    pod_meta = spec["template"].setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    pod = spec["template"]["spec"]
    pod["restartPolicy"] = "Never"
    containers = pod["containers"]
    container = next((c for c in containers if c.get("name") == CONTAINER), containers[0])
    data, volume = data_path(action)
    container["command"] = [
        "finserve", "eval", "answers",
        "--data", data,
        "--adapter", str(action.candidate),
        "--baseline", str(action.baseline),
        "--json",
        "--termination-log", TERMINATION_LOG,
    ]  # fmt: skip
    container.pop("args", None)
    container.update(terminationMessagePath=TERMINATION_LOG, terminationMessagePolicy="File")
    if volume is not None:
        pod["volumes"] = [v for v in pod.get("volumes") or [] if v.get("name") != volume["name"]] + [volume]
        mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != volume["name"]]
        container["volumeMounts"] = [
            *mounts,
            {"name": volume["name"], "mountPath": GOLDEN_MOUNT, "readOnly": True},
        ]
    return job


def job_state(job: client.V1Job) -> tuple[str, str | None, str]:
    """(state, Failed reason, message) from the Job's conditions."""
    for cond in (job.status.conditions if job.status else None) or []:
        if cond.status != "True":
            continue
        if cond.type == "Complete":
            return "Succeeded", None, cond.message or ""
        if cond.type == "Failed":
            return "Failed", cond.reason, cond.message or ""
    return "Running", None, ""


def parse_report(message: str | None) -> tuple[AnswerEvalReport | None, str | None]:
    if not message:
        return None, "the pod left no termination message"
    try:
        return AnswerEvalReport.model_validate_json(message), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "report"
        return None, f"termination message is not an evaluation report ({where}: {first['msg']})"


class KubeEvaluationJobs:
    def __init__(self, api: client.ApiClient, template_path: str | None) -> None:
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.template_path = template_path

    def unavailable(self) -> str | None:
        try:
            load_template(self.template_path)
        except TemplateError as exc:
            return str(exc)
        return None

    async def observe(self, namespace: str, name: str) -> JobObservation:
        try:
            job = await self.batch.read_namespaced_job(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return JobObservation(name=name, state="Absent")
            raise
        state, reason, message = job_state(job)
        if state == "Failed":
            return JobObservation(name=name, state="Failed", reason=reason, message=message)
        pods = await self.core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}")
        statuses = [
            s
            for pod in pods.items
            for s in (pod.status.container_statuses if pod.status else None) or []
            if s.name == CONTAINER or len(pod.spec.containers) == 1
        ]
        if state == "Running":
            stuck = [
                f"{s.state.waiting.reason}: {s.state.waiting.message or ''}".rstrip(": ")
                for s in statuses
                if s.state and s.state.waiting and _STUCK.search(s.state.waiting.reason or "")
            ]
            return JobObservation(name=name, state="Running", message="; ".join(stuck))
        done = [s.state.terminated for s in statuses if s.state and s.state.terminated]
        output = next((t.message for t in done if t.exit_code == 0 and t.message), None)
        report, error = parse_report(output)
        return JobObservation(name=name, state="Succeeded", report=report, report_error=error)

    async def run(self, namespace: str, action: RunEvaluation, owner: ObjectRef) -> None:
        body = build_job(load_template(self.template_path), action, owner)
        try:
            await self.batch.create_namespaced_job(namespace, body)  # type: ignore[arg-type]  # the client sends a manifest dict as it is
        except ApiException as exc:
            if exc.status != 409:  # AlreadyExists: created before a restart, which is the point
                raise

    async def delete(self, namespace: str, name: str) -> None:
        try:
            await self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
