"""KServe Open Inference Protocol v2, mapped onto the chat pipeline (REST here; gRPC decodes its
protobuf into these same models in oip_grpc/codec.py, so both transports behave alike).

A v2 request carries the question as a BYTES tensor named ``text`` (shape [N]); each element is
answered as its own request. Outputs, one element per question: ``text`` (the guarded answer),
``intent``, ``adapter`` (NAME@VERSION), ``request_id`` and ``citations`` (retrieved document ids,
comma-separated); a request's ``outputs`` picks and orders them. Request parameters ``max_tokens``,
``temperature`` and ``user`` map to the chat fields. Tensors may travel in binary (REST's binary tensor data
extension, the default of Triton's and KServe's clients): serving/oip_binary.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finserve.contracts import Route

from .errors import InvalidRequest, ModelNotFound
from .oip_binary import EXTENSION, attach_binary_inputs, split_body
from .schemas import ChatCompletion, ChatCompletionRequest, ChatMessageIn

OUTPUTS = ("text", "intent", "adapter", "request_id", "citations")


class InferTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None


class OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: Literal["BYTES", "FP32"]
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str
    outputs: list[OutputTensor]
    parameters: dict[str, Any] = Field(default_factory=dict)


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="The adapters (NAME@VERSION) the route may serve.")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


def server_metadata() -> ServerMetadata:
    """``GET /v2`` and the ServerMetadata RPC: the same answer on both transports."""
    try:
        ours = version("finserve")
    except PackageNotFoundError:
        ours = "unknown"
    return ServerMetadata(name="finserve", version=ours, extensions=[EXTENSION])


def check_version(route: Route, model_version: str | None) -> None:
    """A ``/versions/{v}`` path names one of the adapters (NAME@VERSION) the route may serve, or is 404."""
    if model_version and model_version not in {str(a) for a in route.candidates()}:
        # Never echoes the version asked for: it is client input.
        raise ModelNotFound(
            "the version is not served by this model; see GET /v2/models/{name} for its versions",
            param="model_version",
        )


def model_metadata(model: str, route: Route, model_version: str | None = None) -> ModelMetadata:
    check_version(route, model_version)
    versions = [model_version] if model_version else [str(a) for a in route.candidates()]
    return ModelMetadata(
        name=model,
        versions=versions,
        platform="finserve",
        inputs=[TensorMetadata(name="text", datatype="BYTES", shape=[-1])],
        outputs=[TensorMetadata(name=n, datatype="BYTES", shape=[-1]) for n in OUTPUTS],
    )


def parse_infer_request(raw: bytes, header_length: str | None) -> InferRequest:
    """A REST request body: JSON, or JSON then binary tensor data (``header_length`` from
    Inference-Header-Content-Length). Raises pydantic's ValidationError or InvalidRequest."""
    head, blob = split_body(raw, header_length)
    if header_length is None:
        return InferRequest.model_validate_json(head)
    try:
        body = json.loads(head)
    except ValueError:
        raise InvalidRequest("body: the JSON part is not valid JSON", param="body") from None
    return InferRequest.model_validate(attach_binary_inputs(body, blob) if isinstance(body, dict) else body)


def _flat(data: list[Any]) -> list[Any]:
    """Tensor data in row-major order: the protocol allows it nested by shape ([[q1], [q2]] for [2, 1])."""
    out: list[Any] = []
    for x in data:
        out.extend(_flat(x) if isinstance(x, list) else [x])
    return out


def requested_outputs(req: InferRequest) -> tuple[list[str], list[str]]:
    """The outputs to answer with, in the order asked (all of them when none are named), and those of them
    asked for in binary (an output's ``parameters.binary_data``, else the request's ``binary_data_output``)."""
    everything = bool((req.parameters or {}).get("binary_data_output"))
    if not req.outputs:
        return list(OUTPUTS), list(OUTPUTS) if everything else []
    names, binary = [], []
    for i, out in enumerate(req.outputs):
        name = out.get("name")
        if name not in OUTPUTS:
            # The name is client input: the message lists the outputs instead of echoing it.
            raise InvalidRequest(
                f"outputs[{i}].name: not an output of this model; outputs: {', '.join(OUTPUTS)}",
                param=f"outputs[{i}].name",
            )
        names.append(name)
        params = out.get("parameters") or {}
        if params.get("binary_data", everything):
            binary.append(name)
    return names, binary


def to_chat_requests(model: str, req: InferRequest, max_questions: int) -> list[ChatCompletionRequest]:
    """One chat request per element of the ``text`` input, at most ``max_questions`` of them."""
    at = next((i for i, t in enumerate(req.inputs) if t.name == "text"), None)
    if at is None:
        raise InvalidRequest("inputs must contain a BYTES tensor named 'text'", param="inputs")
    text = req.inputs[at].model_copy(update={"data": _flat(req.inputs[at].data)})
    if len(text.data) > max_questions or any(n > max_questions for n in text.shape):
        # Checked before anything else looks at the elements: each one costs a guard scan and a generation.
        raise InvalidRequest(
            f"inputs[{at}].shape: at most {max_questions} questions per request", param=f"inputs[{at}].shape"
        )
    if text.datatype != "BYTES":
        raise InvalidRequest("input 'text' must have datatype BYTES", param="inputs.text.datatype")
    if not text.data or not all(isinstance(x, str) for x in text.data):
        raise InvalidRequest("input 'text' must hold one or more strings", param="inputs.text.data")
    requested_outputs(req)  # a wrong output name is refused before anything is generated
    # binary_data_output says how to answer (requested_outputs), not how to generate
    params = {k: v for k, v in (req.parameters or {}).items() if k != "binary_data_output"}
    allowed = {"max_tokens", "temperature", "user"}
    if set(params) - allowed:
        # The unknown names are client input: the message lists what is allowed instead.
        raise InvalidRequest(
            f"parameters: unknown names; allowed: {', '.join(sorted(allowed | {'binary_data_output'}))}",
            param="parameters",
        )
    try:
        return [
            ChatCompletionRequest(model=model, messages=[ChatMessageIn(role="user", content=q)], **params)
            for q in text.data
        ]
    except ValidationError as exc:
        first = exc.errors()[0]  # pydantic's message only: its full text would echo input_value
        name = ".".join(str(p) for p in first.get("loc", ()) if p != "messages")
        raise InvalidRequest(f"parameters.{name}: {first['msg']}", param=f"parameters.{name}") from exc


def to_infer_response(
    model: str, request_id: str, answers: list[ChatCompletion], names: Sequence[str] = OUTPUTS
) -> InferResponse:
    """The answers as output tensors: those in ``names``, in that order."""
    n = len(answers)
    every = {t.name: t for t in _outputs(answers, n)}
    return InferResponse(
        model_name=model,
        id=request_id,
        outputs=[every[name] for name in names],
        parameters={"request_ids": [a.finserve.request_id for a in answers]},
    )


def _outputs(answers: list[ChatCompletion], n: int) -> list[OutputTensor]:
    return [
        OutputTensor(
            name="text", shape=[n], datatype="BYTES", data=[a.choices[0].message.content for a in answers]
        ),
        OutputTensor(
            name="intent", shape=[n], datatype="BYTES", data=[a.finserve.intent or "" for a in answers]
        ),
        OutputTensor(name="adapter", shape=[n], datatype="BYTES", data=[a.finserve.adapter for a in answers]),
        OutputTensor(
            name="request_id", shape=[n], datatype="BYTES", data=[a.finserve.request_id for a in answers]
        ),
        OutputTensor(
            name="citations",
            shape=[n],
            datatype="BYTES",
            data=[",".join(a.finserve.citations) for a in answers],
        ),
    ]
