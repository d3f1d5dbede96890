"""Tick-driven rollout scenarios (Flagger's scheduler tests): the real tick (observe, decide, apply)
on a fake clock, with an in-memory routing table and a fake metrics source. After every tick the
test checks the phase and the weight the routing table actually holds."""

from __future__ import annotations

from typing import Any

from mro_testkit import at, gated, make_spec, report

from finserve.operator.adapters.memory import (
    InMemoryJobs,
    InMemoryRouteStore,
    InMemoryWorkloads,
    ListEventSink,
)
from finserve.operator.core.observations import Reading
from finserve.operator.objects import rollout_status_patch
from finserve.operator.ports import ObjectRef, Ports
from finserve.operator.spec import ModelRolloutSpec
from finserve.operator.status import Phase, RolloutStatus
from finserve.operator.tick import rollout_tick

HEALTHY = {
    "requests": 200.0,
    "error-rate": 0.002,
    "latency-p95": 0.9,
    "pii-output": 0.0,
    "intent-quality": 0.95,
}


class FakeMetrics:
    """Answers each check by its name; records every question."""

    def __init__(self, values: dict[str, float | None]) -> None:
        self.values: dict[str, float | None | str] = dict(values)
        self.asked: list[str] = []

    async def query(self, name: str, promql: str) -> Reading:
        self.asked.append(name)
        value = self.values.get(name)
        return Reading(error=value) if isinstance(value, str) else Reading(value=value)


class Rollout:
    """One ModelRollout driven tick by tick; the clock moves only when the test says so."""

    def __init__(self, spec: ModelRolloutSpec, values: dict[str, float | None] | None = None) -> None:
        self.spec = spec
        self.status = RolloutStatus()
        self.metrics = FakeMetrics(HEALTHY if values is None else values)
        self.routes = InMemoryRouteStore()
        self.events = ListEventSink()
        self.t = 0.0
        self.requeue: float | None = None
        self.annotations: dict[str, str] = {}
        self.generation = 1
        self.jobs = InMemoryJobs()

    @property
    def ports(self) -> Ports:
        return Ports(metrics=self.metrics, routes=self.routes, workloads=InMemoryWorkloads(), jobs=self.jobs)

    async def tick(self) -> None:
        ref = ObjectRef("prod", "bank", self.generation, tuple(sorted(self.annotations.items())))
        decision = await rollout_tick(self.spec, self.status, ref, self.ports, self.events, at(self.t))
        self.status, self.requeue = decision.status, decision.requeue_after

    async def next(self) -> tuple[float, str, int]:
        """Sleep as the operator would (virtually) and tick; (t, phase, routed canary weight)."""
        assert self.requeue is not None, "the rollout is not waiting for a tick"
        self.t += self.requeue
        await self.tick()
        return self.observed()

    def observed(self) -> tuple[float, str, int]:
        route = self.routes.route("prod", self.spec.model)
        assert route is not None
        return self.t, str(self.status.phase), route.canary_weight

    def routed(self) -> tuple[str, str | None]:
        route = self.routes.route("prod", self.spec.model)
        assert route is not None
        return str(route.stable), str(route.canary) if route.canary else None

    async def run_until_settled(self, limit: int = 100) -> list[tuple[float, str, int]]:
        seen = []
        while self.requeue is not None and limit:
            seen.append(await self.next())
            limit -= 1
        return seen


def quick(**analysis: Any) -> ModelRolloutSpec:
    return make_spec(
        {
            "steps": [5, 25, 50, 100],
            "stepInterval": "2m",
            "analysis": {"interval": "1m", "failureThreshold": 2, "minRequests": 50, **analysis},
        }
    )


async def test_healthy_canary_is_promoted_step_by_step():
    r = Rollout(quick())
    await r.tick()
    assert r.observed() == (0, "Progressing", 5)
    assert await r.run_until_settled() == [
        (60, "Progressing", 5),
        (120, "Progressing", 25),
        (180, "Progressing", 25),
        (240, "Progressing", 50),
        (300, "Progressing", 50),
        (360, "Progressing", 100),
        (420, "Progressing", 100),
        (480, "Promoting", 0),
        (481, "Succeeded", 0),
    ]
    assert r.routed() == ("banking77@1.1.0", None)
    assert r.events.reasons() == [
        "Progressing",
        "StepAdvanced",
        "StepAdvanced",
        "StepAdvanced",
        "Promoting",
        "Promoted",
    ]


async def test_error_spike_rolls_back_to_stable():
    r = Rollout(quick())
    await r.tick()
    assert [await r.next() for _ in range(3)] == [
        (60, "Progressing", 5),
        (120, "Progressing", 25),
        (180, "Progressing", 25),
    ]
    r.metrics.values["error-rate"] = 0.31
    assert await r.next() == (240, "Progressing", 25)
    assert r.status.failed_checks == 1
    assert await r.next() == (300, "Failed", 0)
    assert r.requeue is None
    assert r.routed() == ("banking77@1.0.0", None)
    (rollback,) = [e for e in r.events.events if e.reason == "RolledBack"]
    assert rollback.type == "Warning" and "error-rate=0.31" in rollback.message


async def test_no_data_never_aborts_and_the_rollout_goes_on_when_traffic_comes():
    silent = {
        "requests": None,
        "error-rate": None,
        "latency-p95": None,
        "pii-output": 0.0,
        "intent-quality": None,
    }
    r = Rollout(quick(), silent)
    await r.tick()
    for minute in range(1, 31):
        assert await r.next() == (60 * minute, "Progressing", 5)
        assert r.status.failed_checks == 0
        assert r.status.last_analysis is not None and r.status.last_analysis.outcome == "Inconclusive"
    r.metrics.values.update(HEALTHY)
    assert (await r.run_until_settled())[-1][1] == "Succeeded"


async def test_a_pii_finding_in_outputs_rolls_back_at_once():
    r = Rollout(quick(failureThreshold=1))
    await r.tick()
    await r.next()
    r.metrics.values["pii-output"] = 1.0
    assert await r.next() == (120, "Failed", 0)
    assert r.routed() == ("banking77@1.0.0", None)
    assert "pii-output=1 (Failed: 1 > max 0)" in r.status.message


async def test_metric_source_down_waits_without_counting_failures():
    r = Rollout(quick())
    await r.tick()
    r.metrics.values["requests"] = "prometheus unreachable"
    for minute in (1, 2, 3):
        assert await r.next() == (60 * minute, "Progressing", 5)
    conditions = {c.type: c for c in r.status.conditions}
    assert conditions["AnalysisHealthy"].reason == "MetricSourceError"
    assert r.status.failed_checks == 0


async def test_pause_holds_the_weight_until_resume():
    r = Rollout(quick())
    await r.tick()
    await r.next(), await r.next()
    assert r.observed() == (120, "Progressing", 25)
    r.annotations["finserve.dev/pause"] = "2025-01-01T00:02:30Z"
    r.t = 150
    await r.tick()
    assert r.observed() == (150, "Paused", 25)
    assert r.requeue is None  # nothing to do until a command or an edit
    asked = len(r.metrics.asked)
    r.metrics.values["error-rate"] = 0.9  # would fail a check, but none runs while paused
    r.t = 3600
    await r.tick()
    assert r.observed() == (3600, "Paused", 25) and len(r.metrics.asked) == asked
    r.metrics.values["error-rate"] = HEALTHY["error-rate"]
    r.annotations["finserve.dev/resume"] = "2025-01-01T01:00:00Z"
    await r.tick()
    assert r.observed() == (3600, "Progressing", 25)
    assert r.status.step_started_at == at(3600)
    assert await r.next() == (3660, "Progressing", 25)  # the step's two minutes start over
    assert await r.next() == (3720, "Progressing", 50)


async def test_spec_edit_mid_rollout_restarts_the_plan():
    r = Rollout(quick())
    await r.tick()
    for _ in range(4):
        await r.next()
    assert r.observed() == (240, "Progressing", 50)
    r.spec = make_spec(
        {"steps": [10, 100], "stepInterval": "1m", "analysis": {"interval": "1m", "minRequests": 50}}
    )
    r.generation = 2
    r.t = 250
    await r.tick()
    assert r.observed() == (250, "Progressing", 10)
    assert (r.status.current_step_index, r.status.observed_generation) == (0, 2)
    assert await r.run_until_settled() == [
        (310, "Progressing", 100),
        (370, "Promoting", 0),
        (371, "Succeeded", 0),
    ]
    assert "Restarted" in r.events.reasons()


async def test_operator_restart_mid_step_resumes_from_status():
    r = Rollout(quick())
    await r.tick()
    await r.next(), await r.next(), await r.next()
    assert r.observed() == (180, "Progressing", 25) and r.status.successful_checks == 1
    # A new operator process: nothing survives but the object's status (as written to the API) and the
    # routing table. It comes back 40 s later, before the next check is due.
    survivor = Rollout(r.spec)
    survivor.routes = r.routes
    survivor.status = RolloutStatus.from_wire(
        {k: v for k, v in rollout_status_patch(r.status).items() if v is not None}
    )
    survivor.t = 220
    await survivor.tick()
    assert survivor.observed() == (220, "Progressing", 25)
    assert survivor.metrics.asked == []  # the check is not due yet: no query
    assert survivor.requeue == 20
    assert await survivor.next() == (240, "Progressing", 50)  # the pass before the restart still counts


async def test_killed_between_route_write_and_status_write_converges():
    r = Rollout(quick())
    await r.tick()
    await r.next(), await r.next(), await r.next()
    before = r.status
    await r.next()  # advanced to 50% and wrote the route...
    assert r.observed() == (240, "Progressing", 50)
    r.status = before  # ...but the process died before the status was recorded
    r.metrics.values["error-rate"] = 0.5
    r.t = 250
    await r.tick()  # the step's check is redone from the recorded status
    assert r.observed() == (250, "Progressing", 25)
    assert r.routes.route("prod", r.spec.model).canary_weight == r.status.canary_weight
    assert r.status.failed_checks == 1
    assert r.status.phase == Phase.PROGRESSING


SHADOW_HEALTHY = {
    "shadow-samples": 300.0,
    "shadow-similarity": 0.9,
    "shadow-intent-agreement": 0.96,
    "shadow-pii": 0.0,
}


def answer_gated(**evaluation: Any) -> ModelRolloutSpec:
    return make_spec(
        {
            "steps": [5, 50, 100],
            "stepInterval": "1m",
            "analysis": {"interval": "1m", "failureThreshold": 2, "minRequests": 50},
            "evaluation": gated(**evaluation),
            "shadow": {"percent": 10, "duration": "2m", "minSamples": 50},
        }
    )


def shadow_of(r: Rollout) -> float:
    route = r.routes.route("prod", r.spec.model)
    assert route is not None
    return route.shadow_percent


async def test_gated_rollout_evaluates_shadows_steps_evaluates_again_and_promotes():
    r = Rollout(answer_gated(), {**HEALTHY, **SHADOW_HEALTHY})
    await r.tick()
    assert (r.observed(), shadow_of(r)) == ((0, "Evaluating", 0), 0.0)
    (first,) = r.jobs.created
    assert first.stage == "BeforeTraffic"
    assert await r.next() == (10, "Evaluating", 0)  # the Job runs: nothing moves
    r.jobs.succeed(first.job, report())
    assert await r.next() == (20, "Shadowing", 0)
    assert shadow_of(r) == 10.0 and r.status.evaluation.outcome == "Successful"
    assert [await r.next() for _ in range(2)] == [(80, "Shadowing", 0), (140, "Progressing", 5)]
    assert r.metrics.asked.count("shadow-samples") == 2  # the shadow checks used the shadow guard
    assert shadow_of(r) == 10.0  # mirroring goes on while live traffic steps up
    assert [await r.next() for _ in range(2)] == [(200, "Progressing", 50), (260, "Evaluating", 50)]
    second = r.jobs.created[-1]
    assert second.stage == "BeforePromotion" and second.job != first.job
    r.jobs.succeed(second.job, report(answer_accuracy=0.86))
    assert await r.run_until_settled() == [
        (270, "Progressing", 100),
        (330, "Promoting", 0),
        (331, "Succeeded", 0),
    ]
    assert shadow_of(r) == 0.0 and r.routed() == ("banking77@1.1.0", None)
    assert r.events.reasons() == [
        "EvaluationStarted", "EvaluationPassed", "Shadowing", "ShadowPassed", "Progressing", "StepAdvanced",
        "EvaluationStarted", "EvaluationPassed", "StepAdvanced", "Promoting", "Promoted",
    ]  # fmt: skip


async def test_a_missed_margin_fails_the_rollout_before_any_traffic_moves():
    r = Rollout(answer_gated(), {**HEALTHY, **SHADOW_HEALTHY})
    await r.tick()
    weights = [r.observed()[2]]
    for _ in range(5):
        weights.append((await r.next())[2])
    r.jobs.succeed(r.jobs.created[0].job, report(answer_accuracy=0.82))  # 2 points below stable
    assert await r.next() == (60, "Failed", 0)
    weights.append(r.observed()[2])
    assert set(weights) == {0} and shadow_of(r) == 0.0
    assert r.requeue is None and r.metrics.asked == []  # no live or shadow check ever ran
    (failed,) = [e for e in r.events.events if e.reason == "EvaluationFailed"]
    assert "answer_accuracy=0.82" in failed.message and "< stable 0.84 - 0.005" in failed.message


async def test_a_job_that_never_finishes_times_out_and_is_retried_then_fails():
    r = Rollout(answer_gated(timeout="5m", onError="retry", retryLimit=1), {**HEALTHY, **SHADOW_HEALTHY})
    await r.tick()
    first = r.jobs.created[0].job
    while r.status.evaluation.attempt == 1:
        assert (await r.next())[1:] == ("Evaluating", 0)
    # Past 5 minutes (plus the grace) by the operator's own clock: stopped and retried.
    assert r.t == 370 and r.jobs.deleted == [first]
    second = r.jobs.created[-1].job
    assert second != first and r.status.evaluation.attempt == 2
    r.jobs.fail(second, "DeadlineExceeded", "Job was active longer than specified deadline")
    assert await r.next() == (380, "Failed", 0)
    assert r.status.evaluation.outcome == "Error" and "timed out" in r.status.evaluation.message
    assert r.events.reasons().count("EvaluationRetried") == 1 and r.events.reasons()[-1] == "EvaluationError"


async def test_operator_restart_mid_evaluation_finds_its_job_instead_of_creating_another():
    r = Rollout(answer_gated(), {**HEALTHY, **SHADOW_HEALTHY})
    await r.tick()
    await r.next()
    survivor = Rollout(r.spec, {**HEALTHY, **SHADOW_HEALTHY})
    survivor.routes, survivor.jobs = r.routes, r.jobs  # the cluster outlives the process
    survivor.status = RolloutStatus.from_wire(
        {k: v for k, v in rollout_status_patch(r.status).items() if v is not None}
    )
    survivor.t = 15
    await survivor.tick()
    assert survivor.observed() == (15, "Evaluating", 0) and len(r.jobs.created) == 1
    r.jobs.succeed(r.jobs.created[0].job, report())
    assert await survivor.next() == (25, "Shadowing", 0)


async def test_the_job_created_before_a_crash_is_not_created_twice():
    r = Rollout(answer_gated(), {**HEALTHY, **SHADOW_HEALTHY})
    await r.tick()  # created the Job...
    r.status = RolloutStatus()  # ...but died before recording the status
    await r.tick()
    assert len(r.jobs.created) == 1 and r.status.phase == Phase.EVALUATING


async def test_shadow_disagreement_rolls_back_and_stops_mirroring():
    r = Rollout(answer_gated(beforeTraffic=False), {**HEALTHY, **SHADOW_HEALTHY})
    await r.tick()
    assert (r.observed(), shadow_of(r)) == ((0, "Shadowing", 0), 10.0)
    r.metrics.values["shadow-similarity"] = 0.41
    assert [await r.next() for _ in range(2)] == [(60, "Shadowing", 0), (120, "Failed", 0)]
    assert shadow_of(r) == 0.0 and r.routed() == ("banking77@1.0.0", None)
    assert "shadow-similarity=0.41" in r.status.message
