"""A mapped error as gRPC trailing metadata: gRPC's rich error model plus plain keys.

``grpc-status-details-bin`` holds a google.rpc.Status with an ErrorInfo (reason = finserve's error
code, as REST's ``error.code``), a BadRequest naming the field when there is one, and a RetryInfo
when retrying later can help (503s). ``retry-after`` and ``x-request-id`` repeat the essentials for
clients that do not parse the rich model. The message is the client-safe one from errors.py.
"""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from ..errors import ErrorMapping

DOMAIN = "finserve.dev"


def error_trailers(m: ErrorMapping, request_id: str | None) -> list[tuple[str, str | bytes]]:
    status = status_pb2.Status(code=m.grpc_code.value[0], message=m.message)
    meta = {"request_id": request_id} if request_id else {}
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=m.code, domain=DOMAIN, metadata=meta))
    if m.param:
        violation = error_details_pb2.BadRequest.FieldViolation(field=m.param, description=m.message)
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    trailers: list[tuple[str, str | bytes]] = []
    if m.retry_after is not None:
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=m.retry_after)))
        trailers.append(("retry-after", str(m.retry_after)))
    if request_id:
        trailers.append(("x-request-id", request_id))
    return [("grpc-status-details-bin", status.SerializeToString()), *trailers]
