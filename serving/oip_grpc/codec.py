"""Open Inference Protocol v2 protobuf <-> the REST models in serving/oip.py.

Decoding into ``oip.InferRequest`` makes gRPC validate and answer a request exactly as REST does;
only the wire format differs. BYTES elements come either in ``contents.bytes_contents`` (KServe's
clients) or in ``raw_input_contents`` (Triton's clients: each element a 4-byte little-endian
length, then its bytes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..access.ingress import validation_message
from ..errors import InvalidRequest
from ..oip import InferRequest, InferResponse, ModelMetadata
from ..oip_binary import join_raw_bytes, split_raw_bytes
from . import grpc_predict_v2_pb2 as pb

# datatype -> the InferTensorContents field that carries it
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """Protobuf parameters as plain values (a float travels as a string: the protocol has no double)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def to_parameter(value: Any) -> pb.InferParameter:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    if isinstance(value, list | tuple):
        return pb.InferParameter(string_param=",".join(str(v) for v in value))
    return pb.InferParameter(string_param=str(value))


def _elements(t: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> list[Any]:
    if raw is not None:
        # Only BYTES is ever read (the question); other raw tensors are kept empty, not parsed.
        return split_raw_bytes(raw) if t.datatype == "BYTES" else []
    field = _CONTENTS.get(t.datatype)
    return list(getattr(t.contents, field)) if field else []


def _tensor(t: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> dict[str, Any]:
    data = _elements(t, raw)
    if t.datatype == "BYTES":
        if t.name == "text":
            try:
                data = [x.decode("utf-8") for x in data]
            except UnicodeDecodeError as exc:
                raise InvalidRequest(
                    "input 'text' must hold UTF-8 strings", param="inputs.text.contents"
                ) from exc
        else:  # not read by finserve; decoded only so the request can be validated and audited
            data = [x.decode("utf-8", errors="replace") for x in data]
    return {
        "name": t.name,
        "shape": list(t.shape),
        "datatype": t.datatype,
        "data": data,
        "parameters": parameters(t.parameters) or None,
    }


def _body(req: pb.ModelInferRequest) -> dict[str, Any]:
    raws: list[bytes | None] = list(req.raw_input_contents) or [None] * len(req.inputs)
    if len(raws) != len(req.inputs):
        raise InvalidRequest("raw_input_contents must hold one entry per input", param="raw_input_contents")
    if req.raw_input_contents and any(t.HasField("contents") for t in req.inputs):
        raise InvalidRequest(
            "use either raw_input_contents or inputs[].contents, not both", param="raw_input_contents"
        )
    return {
        "id": req.id or None,
        "inputs": [_tensor(t, raw) for t, raw in zip(req.inputs, raws, strict=True)],
        "outputs": [{"name": o.name} for o in req.outputs] or None,
        "parameters": parameters(req.parameters) or None,
    }


def to_infer_request(req: pb.ModelInferRequest) -> InferRequest:
    """The REST model of a gRPC request; InvalidRequest names what is wrong."""
    if not req.model_name:
        raise InvalidRequest("model_name is required", param="model_name")
    try:
        return InferRequest.model_validate(_body(req))
    except ValidationError as exc:
        msg, field = validation_message(exc)
        raise InvalidRequest(msg, param=field) from exc


def audit_body(req: pb.ModelInferRequest) -> str:
    """A rejected request as JSON text for the audit log (which guards it first), like REST's body."""
    try:
        body = _body(req)
    except InvalidRequest:  # undecodable: keep whatever text there is
        body = {
            "inputs": [
                [x.decode("utf-8", errors="replace") for x in t.contents.bytes_contents] for t in req.inputs
            ],
            "raw_input_contents": [r.decode("utf-8", errors="replace") for r in req.raw_input_contents],
        }
    return json.dumps({"model_name": req.model_name, **body}, ensure_ascii=False, default=str)


def to_proto_response(resp: InferResponse, raw: bool = False) -> pb.ModelInferResponse:
    """The response message; with ``raw``, BYTES outputs in ``raw_output_contents`` (as the request came:
    Triton's clients send and read raw contents, KServe's typed ones; tritonclient's ``as_numpy`` cannot
    read typed BYTES contents under numpy 2)."""
    out = pb.ModelInferResponse(
        model_name=resp.model_name, model_version=resp.model_version or "", id=resp.id
    )
    for t in resp.outputs:
        tensor = out.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        if raw and t.datatype == "BYTES":
            out.raw_output_contents.append(join_raw_bytes(str(x).encode("utf-8") for x in t.data))
        elif t.datatype == "BYTES":
            tensor.contents.bytes_contents.extend(str(x).encode("utf-8") for x in t.data)
        else:
            tensor.contents.fp32_contents.extend(t.data)
    for key, value in resp.parameters.items():
        out.parameters[key].CopyFrom(to_parameter(value))
    return out


def to_proto_metadata(meta: ModelMetadata) -> pb.ModelMetadataResponse:
    def tensors(items):  # noqa: ANN001, ANN202
        return [
            pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
            for t in items
        ]

    return pb.ModelMetadataResponse(
        name=meta.name,
        versions=meta.versions,
        platform=meta.platform,
        inputs=tensors(meta.inputs),
        outputs=tensors(meta.outputs),
    )
