"""What both transports (HTTP in gateway.py, gRPC in oip_grpc/servicer.py) do before the pipeline runs:
check the client's headers (client_fields.py), verify the credential (authenticator.py), decide
(policy.py), and audit a refusal. Headers are a lower-case mapping: HTTP headers or gRPC metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from pydantic import ValidationError

from ..audit.record import bounded
from ..client_fields import ClientFields
from ..errors import FinserveError, InvalidRequest, Unauthorized, map_error
from ..pipeline import Pipeline, RequestContext
from .authenticator import Authenticator
from .policy import authorize, require_scope
from .principal import INFER, Principal

log = logging.getLogger(__name__)

Readiness = Callable[[], Awaitable[dict[str, bool]]]
REJECTED_BODY_CHARS = 4096  # how much of a refused request's body its audit line keeps
UNKNOWN_TENANT = "-"  # the audit's tenant of a request refused before its tenant was established
TENANT_HEADER = "x-finserve-tenant"


def validation_message(err: ValidationError) -> tuple[str, str | None]:
    """The first problem as ``field: what is wrong``, from pydantic's message only: never its
    ``input_value`` and never a key the client made up (an unknown field is named by its parent)."""
    first = err.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    msg = first["msg"]
    if first.get("type") == "extra_forbidden":
        loc, msg = loc[:-1], "unknown field"
    field = ".".join(loc) or None
    return (f"{field}: {msg}" if field else msg), field


def fork_context(base: RequestContext, request_id: str) -> RequestContext:
    """A fresh context for one question of a multi-question OIP request, with the same checked caller facts."""
    return RequestContext(
        request_id=request_id,
        tenant=base.tenant,
        sticky_key=base.sticky_key,
        adapter_override=base.adapter_override,
        principal=base.principal,
        deadline_ms=base.deadline_ms,
        trace_id=base.trace_id,
    )


class Ingress:
    """The transport-neutral front half of every request: one per app (REST) or servicer (gRPC)."""

    def __init__(self, pipeline: Pipeline, authenticator: Authenticator | None = None) -> None:
        gw = pipeline.config.gateway
        self.pipeline = pipeline
        self.default_tenant = gw.default_tenant
        self.fields = ClientFields(pipeline.guard, gw.default_tenant)
        self.auth = authenticator or Authenticator(pipeline.config.auth, gw.default_tenant, gw.api_key_env)

    def check(self, headers: Mapping[str, str], scope: str | None) -> Principal | None:
        """For endpoints that are not audited (metadata, metrics, docs): the principal, or Unauthorized /
        Forbidden. ``scope`` None: open."""
        if scope is None or not self.auth.enabled:
            return None
        return require_scope(self.auth.authenticate(headers.get("authorization")), scope)

    async def admit(
        self, headers: Mapping[str, str], scope: str = INFER, body_adapter: tuple[str, str] | None = None
    ) -> tuple[RequestContext, FinserveError | None]:
        """The request's context and the first reason to refuse it (None: go on). The context holds only
        checked values, so a refused request is still audited with it (and with its principal, if known).

        ``body_adapter`` is (field, value) of an adapter named in the request itself (gRPC model_version);
        the header wins. With auth on, a credential problem (401) is reported before any other, so a caller
        without one learns nothing about the rest of its request.
        """
        ctx, error = await self.fields.context(headers)
        if body_adapter is not None and body_adapter[1] and not ctx.adapter_override:
            try:
                ctx.adapter_override = await self.fields.adapter_ref(*body_adapter)
            except InvalidRequest as exc:
                error = error or exc
        if not self.auth.enabled:
            return ctx, error
        claimed = headers.get(TENANT_HEADER)
        requested = claimed if claimed is not None and claimed == ctx.tenant else None
        ctx.tenant = UNKNOWN_TENANT  # until the principal and the policy say which tenant it is
        try:
            principal = self.auth.authenticate(headers.get("authorization"))
        except Unauthorized as exc:
            return ctx, exc
        ctx.principal = principal.id if principal else None
        if error is not None:
            return ctx, error
        try:
            decision = authorize(
                principal,
                auth_on=True,
                scope=scope,
                requested_tenant=requested,
                default_tenant=self.default_tenant,
                adapter_override=ctx.adapter_override,
            )
        except FinserveError as exc:
            return ctx, exc
        ctx.tenant, ctx.adapter_override = decision.tenant, decision.adapter_override
        return ctx, None

    async def audit_rejection(self, ctx: RequestContext, exc: BaseException, body: str | None) -> None:
        """Audit a request refused before the pipeline ran, its body guarded first (it may hold PII).

        Raises AuditUnavailable when the line cannot be written (the caller answers 503 instead)."""
        if body:
            try:
                # Bounded first: a refused body can be anything up to the body limit, and the guard's
                # tokenizer is slow on pathological text (60,000 brackets take minutes).
                [masked] = await self.pipeline.guard.scan_many([bounded(body, REJECTED_BODY_CHARS)])
                ctx.masked_input = masked.text
            except Exception:  # noqa: BLE001 - unguarded text must not reach the log: record that it was withheld
                log.warning("request %s: body not guarded, left out of its audit line", ctx.request_id)
                ctx.masked_input = "<body withheld: the guard failed on it>"
        mapped = map_error(exc)
        await self.pipeline.finish(ctx, mapped.status, mapped.code)
