"""Between kopf's dicts and the typed models: parse the spec, ref the object, shape the status patch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from pydantic import BaseModel, ValidationError

from .ports import ObjectRef
from .spec import ModelRolloutSpec
from .status import RolloutStatus

AUTOSCALER_FIELDS = {"replicas"}
"""Status fields the autoscaling timer owns; the rollout handler never writes them (no lost updates)."""


def parse_spec(spec: Mapping[str, Any]) -> ModelRolloutSpec | str:
    """The typed spec, or a one-line reason it is invalid."""
    try:
        return ModelRolloutSpec.model_validate(dict(spec))
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}" for err in exc.errors()
        )


def object_ref(body: Mapping[str, Any]) -> ObjectRef:
    meta = body.get("metadata", {})
    return ObjectRef(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        generation=meta.get("generation"),
        annotations=tuple(sorted((meta.get("annotations") or {}).items())),
        uid=meta.get("uid"),
    )


def rollout_status_patch(status: RolloutStatus) -> dict[str, Any]:
    """The rollout's fields of status; a None deletes a stale key in the merge patch.

    Objects (lastAnalysis, evaluation) carry their absent fields as None too: a merge patch merges
    objects key by key, so a new evaluation attempt would otherwise inherit the last one's outcome.
    """
    data = status.model_dump(mode="json", by_alias=True, exclude=AUTOSCALER_FIELDS, exclude_none=True)
    for name, field in RolloutStatus.model_fields.items():
        key = field.alias or name
        if name in AUTOSCALER_FIELDS:
            continue
        value = getattr(status, name)
        if value is None:
            data[key] = None
        elif isinstance(value, BaseModel):
            data[key] = _merge_value(value.model_dump(mode="json", by_alias=True))
    return data


def _merge_value(value: Any, in_list: bool = False) -> Any:
    """None stays in objects (a merge patch deletes the key) but not in list items: a list is
    replaced whole, and the API server would reject a null where the schema wants a number."""
    if isinstance(value, dict):
        return {k: _merge_value(v, in_list) for k, v in value.items() if not (in_list and v is None)}
    if isinstance(value, list):
        return [_merge_value(v, True) for v in value]
    return value


def scaling_status_patch(status: RolloutStatus) -> dict[str, Any]:
    return {"replicas": [p.to_wire() for p in status.replicas]}


class KopfEvents:
    """EventSink posting Kubernetes Events on the object through kopf's queue."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body

    def emit(self, type: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        import kopf

        kopf.event(cast(kopf.Body, self.body), type=type, reason=reason, message=message[:1024])
