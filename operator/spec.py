"""The ModelRollout spec as typed models: the CRD's openAPIV3Schema says the same in YAML.

Field names are camelCase on the wire (Kubernetes style) and snake_case in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from finserve.contracts import AdapterRef, StrictModel
from finserve.contracts.evaluation import GATE_METRICS, LOWER_IS_BETTER

from .durations import Duration, seconds
from .queries import (
    ALL_BUILTINS,
    BUILTIN_METRICS,
    DEFAULT_METRICS,
    POOL_PLACEHOLDERS,
    SHADOW_METRICS,
    SHADOW_SAMPLES_QUERY,
    check_template,
)

DEFAULT_STEPS = (5, 25, 50, 100)
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class CamelModel(StrictModel):
    """StrictModel with camelCase aliases, as Kubernetes resources spell fields."""

    model_config = ConfigDict(**StrictModel.model_config, alias_generator=to_camel)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class AdapterVersion(CamelModel):
    """One LoRA adapter version of the base model."""

    adapter: str = Field(description="Adapter name in the registry.")
    version: str = Field(description="Adapter semantic version, e.g. 1.2.0.")

    @model_validator(mode="after")
    def _valid_ref(self) -> Self:
        self.ref()  # raises ValueError with the registry's rules
        return self

    def ref(self) -> AdapterRef:
        return AdapterRef(name=self.adapter, version=self.version)


class MetricCheck(CamelModel):
    """One metric of the canary analysis; out of [min, max] fails the check."""

    name: str = Field(
        pattern=_DNS_LABEL,
        max_length=63,
        description="Metric name; without a query it must name a built-in metric "
        f"({', '.join(BUILTIN_METRICS)}; in the shadow phase {', '.join(SHADOW_METRICS)}).",
    )
    query: str | None = Field(
        None,
        description="PromQL returning one number; {{ model }}, {{ adapter }}, {{ version }}, "
        "{{ namespace }}, {{ rollout }} and {{ interval }} are filled in.",
    )
    min: float | None = Field(None, description="Lowest passing value (inclusive).")
    max: float | None = Field(None, description="Highest passing value (inclusive).")
    on_no_data: Literal["inconclusive", "fail"] = Field(
        "inconclusive", description="What an empty or NaN result means: wait (inconclusive) or fail."
    )

    @field_validator("query")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v)

    @model_validator(mode="after")
    def _resolvable(self) -> Self:
        if self.query is None and self.name not in ALL_BUILTINS:
            raise ValueError(
                f"metric {self.name!r} has no query and is not a built-in ({', '.join(ALL_BUILTINS)})"
            )
        if self.query is not None and self.min is None and self.max is None:
            raise ValueError(f"metric {self.name!r} needs min and/or max")
        lo, hi = self.bounds()
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"metric {self.name!r}: min {lo} is above max {hi}")
        return self

    def resolved_query(self) -> str:
        return self.query if self.query is not None else ALL_BUILTINS[self.name].query

    def bounds(self) -> tuple[float | None, float | None]:
        """(min, max); a built-in used without bounds brings its defaults."""
        if self.query is None and self.min is None and self.max is None:
            builtin = ALL_BUILTINS[self.name]
            return builtin.min, builtin.max
        return self.min, self.max


def _default_metrics() -> list[MetricCheck]:
    return [MetricCheck(name=name) for name in DEFAULT_METRICS]


def _default_shadow_metrics() -> list[MetricCheck]:
    return [MetricCheck(name=name) for name in ("shadow-similarity", "shadow-intent-agreement", "shadow-pii")]


def _unique(v: list[MetricCheck]) -> list[MetricCheck]:
    names = [c.name for c in v]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"metric names must be unique: {dupes}")
    return v


def _builtins_of(v: list[MetricCheck], wrong: Mapping[str, object], where: str) -> list[MetricCheck]:
    # A shadow built-in has no data while the canary serves live traffic only, and a live built-in
    # none in the shadow phase (weight 0): either would hold the rollout Inconclusive for ever.
    misplaced = sorted(c.name for c in v if c.query is None and c.name in wrong)
    if misplaced:
        raise ValueError(f"built-in(s) {misplaced} do not belong in {where}")
    return v


class Analysis(CamelModel):
    """How often and how strictly the canary is checked."""

    interval: Duration = Field("1m", description="Time between checks; also the PromQL range.")
    failure_threshold: int = Field(2, ge=1, le=100, description="Consecutive failed checks that roll back.")
    success_threshold: int = Field(
        1, ge=1, le=100, description="Consecutive successful checks needed at a step before advancing."
    )
    min_requests: int = Field(
        20, ge=0, description="Below this many canary requests in the interval a check is Inconclusive."
    )
    requests_query: str | None = Field(
        None, description="PromQL for the canary's request count in the interval (default: built-in)."
    )
    metrics: list[MetricCheck] = Field(
        default_factory=_default_metrics,
        min_length=1,
        description="Checks; default: the four built-ins with their default bounds.",
    )

    @field_validator("requests_query")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v)

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, v: list[MetricCheck]) -> list[MetricCheck]:
        return _builtins_of(_unique(v), SHADOW_METRICS, "the live analysis (use strategy.shadow.metrics)")

    @property
    def interval_seconds(self) -> float:
        return seconds(self.interval)


class Shadow(CamelModel):
    """Shadow traffic before any live traffic: the canary answers a sample of stable's requests."""

    percent: float = Field(
        gt=0, le=100, description="Percent of stable's requests mirrored to the canary (never returned)."
    )
    duration: Duration = Field("10m", description="Least time in the shadow phase before live traffic.")
    min_samples: int = Field(
        100,
        ge=0,
        description="Below this many compared shadow pairs in the interval a check is Inconclusive.",
    )
    metrics: list[MetricCheck] = Field(
        default_factory=_default_shadow_metrics,
        min_length=1,
        description="Shadow checks; default: shadow-similarity, shadow-intent-agreement and shadow-pii.",
    )

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, v: list[MetricCheck]) -> list[MetricCheck]:
        return _builtins_of(_unique(v), BUILTIN_METRICS, "the shadow phase (the canary has no live traffic)")

    @property
    def duration_seconds(self) -> float:
        return seconds(self.duration)

    def as_analysis(self, live: Analysis) -> Analysis:
        """The shadow checks as an analysis: the live interval and thresholds, shadow samples as guard."""
        return live.model_copy(
            update={
                "min_requests": self.min_samples,
                "requests_query": SHADOW_SAMPLES_QUERY,
                "metrics": self.metrics,
            }
        )


class ConfigMapKey(CamelModel):
    """A key of a ConfigMap in the rollout's namespace."""

    name: str = Field(pattern=_DNS_LABEL, max_length=253, description="ConfigMap name.")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key holding the CSV.")


class ClaimPath(CamelModel):
    """A file on a PersistentVolumeClaim in the rollout's namespace."""

    claim_name: str = Field(pattern=_DNS_LABEL, max_length=253, description="PersistentVolumeClaim name.")
    path: str = Field(
        pattern=r"^[^/].*$", min_length=1, description="Path of the CSV inside the volume (relative)."
    )

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        if ".." in v.split("/"):
            raise ValueError("path must stay inside the volume (no '..')")
        return v


class RegistryFile(CamelModel):
    """A file inside an adapter version folder of the adapter registry."""

    adapter: str = Field(description="Adapter name in the registry (e.g. a golden-set 'adapter').")
    version: str = Field(description="Its semantic version.")
    path: str = Field(pattern=r"^[^/].*$", min_length=1, description="File inside NAME/VERSION/.")

    @model_validator(mode="after")
    def _valid(self) -> Self:
        AdapterRef(name=self.adapter, version=self.version)
        if ".." in self.path.split("/"):
            raise ValueError("path must stay inside the adapter version folder (no '..')")
        return self


class GoldenSet(CamelModel):
    """Where the evaluation Job reads the golden set (CSV): exactly one source."""

    config_map: ConfigMapKey | None = Field(None, description="A ConfigMap key, mounted into the Job's pod.")
    pvc: ClaimPath | None = Field(None, description="A file on a PersistentVolumeClaim, mounted read-only.")
    registry: RegistryFile | None = Field(
        None, description="A file inside an adapter version of the registry the Job's image reads."
    )

    @model_validator(mode="after")
    def _one(self) -> Self:
        sources = (("configMap", self.config_map), ("pvc", self.pvc), ("registry", self.registry))
        given = [name for name, source in sources if source is not None]
        if len(given) != 1:
            raise ValueError(
                f"goldenSet needs exactly one of configMap, pvc, registry (got {given or 'none'})"
            )
        return self


class GateCheck(CamelModel):
    """One figure of the evaluation report; a margin compares canary with stable on the same rows."""

    metric: Literal[GATE_METRICS] = Field(  # type: ignore[valid-type]
        description=f"Report metric ({', '.join(GATE_METRICS)}); lower is better for "
        f"{', '.join(sorted(LOWER_IS_BETTER))}."
    )
    margin: float | None = Field(
        None,
        ge=0,
        description="How much worse than stable the canary may be, in the metric's units (rates are "
        "shares: 0.005 is 0.5 points): canary >= stable - margin, or <= stable + margin where lower is "
        "better.",
    )
    min: float | None = Field(None, description="Lowest passing canary value (inclusive).")
    max: float | None = Field(None, description="Highest passing canary value (inclusive).")

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.margin is None and self.min is None and self.max is None:
            raise ValueError(f"gate check {self.metric!r} needs margin, min and/or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"gate check {self.metric!r}: min {self.min} is above max {self.max}")
        return self


def _default_gate_checks() -> list[GateCheck]:
    return [
        GateCheck(metric="answer_accuracy", margin=0.005),
        GateCheck(metric="groundedness", margin=0.01),
        GateCheck(metric="pii_leaks", max=0),
    ]


class Evaluation(CamelModel):
    """Offline answer evaluation (`finserve eval answers`, canary vs stable) run as a Job."""

    golden_set: GoldenSet = Field(description="Where the golden set comes from.")
    before_traffic: bool = Field(True, description="Evaluate before any traffic (or shadow) moves.")
    before_promotion: bool = Field(True, description="Evaluate again before the last step (100 %).")
    checks: list[GateCheck] = Field(
        default_factory=_default_gate_checks,
        min_length=1,
        description="Margins and bounds; default: answer_accuracy within 0.5 points of stable, "
        "groundedness within 1 point, no PII leak.",
    )
    fail_on_significantly_worse: bool = Field(
        False,
        description="Also fail when the paired test finds the canary's answer accuracy worse (5 % level).",
    )
    min_rows: int = Field(
        20, ge=1, description="Fewer answered rows (candidate or baseline) make the result an Error."
    )
    timeout: Duration = Field("30m", description="Longest a Job may run (activeDeadlineSeconds).")
    on_error: Literal["fail", "retry"] = Field(
        "fail",
        description="A Job that fails, times out or reports nothing usable: fail the rollout or retry.",
    )
    retry_limit: int = Field(2, ge=0, le=10, description="With onError retry: Jobs after the first.")

    @field_validator("checks")
    @classmethod
    def _unique_metrics(cls, v: list[GateCheck]) -> list[GateCheck]:
        names = [c.metric for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"gate check metrics must be unique: {dupes}")
        return v

    @model_validator(mode="after")
    def _some_stage(self) -> Self:
        if not (self.before_traffic or self.before_promotion):
            raise ValueError("evaluation needs beforeTraffic and/or beforePromotion")
        return self

    @property
    def timeout_seconds(self) -> float:
        return seconds(self.timeout)


class Strategy(CamelModel):
    """The canary plan: absolute traffic weights and how long each must stay healthy."""

    steps: list[int] = Field(
        default_factory=lambda: list(DEFAULT_STEPS),
        min_length=1,
        max_length=20,
        description="Canary weights in percent, strictly ascending, ending at 100.",
    )
    step_interval: Duration = Field("5m", description="Least time at each step before advancing.")
    analysis: Analysis = Field(default_factory=Analysis, description="Canary analysis.")
    evaluation: Evaluation | None = Field(
        None, description="Offline evaluation gate before traffic and before promotion (optional)."
    )
    shadow: Shadow | None = Field(
        None, description="Shadow phase at 0 % live traffic before the first step (optional)."
    )

    @field_validator("steps")
    @classmethod
    def _ascending_to_100(cls, v: list[int]) -> list[int]:
        if any(w < 1 or w > 100 for w in v):
            raise ValueError("every step weight must be between 1 and 100")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"steps must be strictly ascending: {v}")
        if v[-1] != 100:
            raise ValueError(f"steps must end at 100: {v}")
        return v

    @property
    def step_interval_seconds(self) -> float:
        return seconds(self.step_interval)


class WorkloadRef(CamelModel):
    """The generator pool's workload: a Deployment or a KubeRay RayService."""

    kind: Literal["Deployment", "RayService"] = Field(description="Workload kind.")
    name: str = Field(pattern=_DNS_LABEL, max_length=253, description="Workload name, same namespace.")
    serve_deployment: str | None = Field(
        None, description="RayService: the Serve deployment whose num_replicas to set."
    )
    worker_group: str | None = Field(
        None, description="RayService: the workerGroupSpecs entry whose replicas to set."
    )

    @model_validator(mode="after")
    def _ray_fields(self) -> Self:
        if self.kind == "RayService" and not (self.serve_deployment or self.worker_group):
            raise ValueError("a RayService target needs serveDeployment and/or workerGroup")
        if self.kind == "Deployment" and (self.serve_deployment or self.worker_group):
            raise ValueError("serveDeployment and workerGroup apply to RayService targets only")
        return self

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


class Autoscaling(CamelModel):
    """Replicas of the generator pool(s) from GPU utilization and queue depth (HPA formula)."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas per pool.")
    max_replicas: int = Field(ge=1, description="Most replicas per pool.")
    target_gpu_utilization: float = Field(
        70.0,
        gt=0,
        le=100,
        alias="targetGPUUtilization",
        description="Target average GPU utilization, percent.",
    )
    target_queue_depth: float | None = Field(
        None, gt=0, description="Target average queue depth per replica (optional second signal)."
    )
    scale_up_stabilization: Duration = Field(
        "0s", description="Scale up to the lowest recommendation of this window."
    )
    scale_down_stabilization: Duration = Field(
        "5m", description="Scale down to the highest recommendation of this window."
    )
    pool: Literal["shared", "dedicated"] = Field(
        "shared", description="shared: one pool serves stable and canary; dedicated: the canary has its own."
    )
    target: WorkloadRef = Field(description="The (stable or shared) generator pool.")
    canary_target: WorkloadRef | None = Field(None, description="The canary pool, when pool is dedicated.")
    gpu_utilization_query: str | None = Field(
        None, description="PromQL override for GPU utilization; {{ namespace }}, {{ workload }}, {{ pool }}."
    )
    queue_depth_query: str | None = Field(
        None, description="PromQL override for queue depth; {{ namespace }}, {{ workload }}, {{ pool }}."
    )

    @field_validator("gpu_utilization_query", "queue_depth_query")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v, POOL_PLACEHOLDERS)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if self.pool == "dedicated" and self.canary_target is None:
            raise ValueError("pool: dedicated needs a canaryTarget")
        if self.pool == "shared" and self.canary_target is not None:
            raise ValueError("canaryTarget applies to pool: dedicated only")
        return self


class ModelRolloutSpec(CamelModel):
    """What to roll out (stable -> canary of one client-facing model) and how."""

    model: str = Field(pattern=_DNS_LABEL, max_length=63, description="The model name clients call.")
    base_model: str = Field(min_length=1, description="Base model id both adapters are trained on.")
    stable: AdapterVersion = Field(description="The adapter version serving today.")
    canary: AdapterVersion = Field(description="The adapter version to roll out.")
    strategy: Strategy = Field(default_factory=Strategy, description="Steps and analysis.")
    autoscaling: Autoscaling | None = Field(None, description="Generator pool autoscaling (optional).")

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.stable.ref() == self.canary.ref():
            raise ValueError(f"canary {self.canary.ref()} is the stable version already")
        return self
