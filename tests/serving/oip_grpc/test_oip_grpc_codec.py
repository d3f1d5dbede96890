"""OIP v2 protobuf <-> the REST models: the same validation and the same answers as REST /v2."""

from __future__ import annotations

import struct

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from finserve.serving.errors import BackendUnavailable, InvalidRequest, PIIBlocked, map_error
from finserve.serving.oip import InferResponse, OutputTensor, to_chat_requests
from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
from finserve.serving.oip_grpc.codec import audit_body, to_infer_request, to_proto_response
from finserve.serving.oip_grpc.status import error_trailers

Tensor = pb.ModelInferRequest.InferInputTensor


def text_request(*questions: str, **params: pb.InferParameter) -> pb.ModelInferRequest:
    t = Tensor(
        name="text",
        datatype="BYTES",
        shape=[len(questions)],
        contents=pb.InferTensorContents(bytes_contents=[q.encode() for q in questions]),
    )
    return pb.ModelInferRequest(model_name="finserve-banking", inputs=[t], parameters=params)


def raw_bytes(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def test_bytes_contents_and_parameters_become_chat_requests():
    req = text_request(
        "Where is my card?",
        "Ünïcode fee?",
        max_tokens=pb.InferParameter(int64_param=12),
        temperature=pb.InferParameter(string_param="0.5"),
        user=pb.InferParameter(string_param="u1"),
    )
    chats = to_chat_requests("finserve-banking", to_infer_request(req), 16)
    assert [c.messages[0].content for c in chats] == ["Where is my card?", "Ünïcode fee?"]
    assert {(c.max_tokens, c.temperature, c.user) for c in chats} == {(12, 0.5, "u1")}


def test_raw_input_contents_are_length_prefixed_elements():
    req = pb.ModelInferRequest(
        model_name="m",
        inputs=[Tensor(name="text", datatype="BYTES", shape=[2])],
        raw_input_contents=[raw_bytes(b"first question", "zweite Frage ß".encode())],
    )
    assert to_infer_request(req).inputs[0].data == ["first question", "zweite Frage ß"]


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (pb.ModelInferRequest(model_name="m"), "inputs"),
        (pb.ModelInferRequest(inputs=[Tensor(name="text", datatype="BYTES")]), "model_name"),
        (
            pb.ModelInferRequest(
                model_name="m",
                inputs=[
                    Tensor(
                        name="text",
                        datatype="BYTES",
                        shape=[1],
                        contents=pb.InferTensorContents(bytes_contents=[b"\xff\xfe"]),
                    )
                ],
            ),
            "UTF-8",
        ),
        (
            pb.ModelInferRequest(
                model_name="m",
                inputs=[Tensor(name="text", datatype="BYTES", shape=[1])],
                raw_input_contents=[struct.pack("<I", 50) + b"short"],
            ),
            "longer than the data",
        ),
        (
            pb.ModelInferRequest(
                model_name="m",
                inputs=[Tensor(name="text", datatype="BYTES", shape=[1])],
                raw_input_contents=[b"a", b"b"],
            ),
            "one entry per input",
        ),
    ],
    ids=["no-inputs", "no-model", "not-utf8", "truncated-raw", "raw-count"],
)
def test_malformed_requests_are_invalid_with_the_problem_named(request_, needle):
    with pytest.raises(InvalidRequest, match=needle):
        to_infer_request(request_)


@pytest.mark.parametrize(
    ("tensor", "needle"),
    [
        (
            Tensor(
                name="text", datatype="FP32", shape=[1], contents=pb.InferTensorContents(fp32_contents=[1.0])
            ),
            "datatype BYTES",
        ),
        (
            Tensor(
                name="image",
                datatype="BYTES",
                shape=[1],
                contents=pb.InferTensorContents(bytes_contents=[b"x"]),
            ),
            "named 'text'",
        ),
    ],
    ids=["wrong-datatype", "missing-text"],
)
def test_wrong_tensors_fail_as_rest_does(tensor, needle):
    infer = to_infer_request(pb.ModelInferRequest(model_name="m", inputs=[tensor]))
    with pytest.raises(InvalidRequest, match=needle):
        to_chat_requests("m", infer, 16)


def test_unknown_parameters_are_refused_as_in_rest():
    infer = to_infer_request(text_request("hi", adapter=pb.InferParameter(string_param="x")))
    with pytest.raises(InvalidRequest, match="parameters: unknown names"):
        to_chat_requests("m", infer, 16)


def test_response_keeps_every_output_and_flattens_list_parameters():
    resp = InferResponse(
        model_name="m",
        id="r1",
        parameters={"request_ids": ["a", "b"], "n": 2, "ok": True},
        outputs=[OutputTensor(name="text", shape=[2], datatype="BYTES", data=["€5 fee", "ok"])],
    )
    out = to_proto_response(resp)
    assert (out.model_name, out.id) == ("m", "r1")
    assert list(out.outputs[0].contents.bytes_contents) == ["€5 fee".encode(), b"ok"]
    assert list(out.outputs[0].shape) == [2]
    assert out.parameters["request_ids"].string_param == "a,b"
    assert out.parameters["n"].int64_param == 2 and out.parameters["ok"].bool_param is True


def test_audit_body_keeps_the_text_for_the_guard_even_when_undecodable():
    req = pb.ModelInferRequest(
        model_name="m",
        inputs=[Tensor(name="text", datatype="BYTES", shape=[1])],
        raw_input_contents=[b"\x00\x00card 4111 1111 1111 1111"],
    )
    assert "card 4111 1111 1111 1111" in audit_body(req)


def _details(trailers) -> status_pb2.Status:
    return status_pb2.Status.FromString(dict(trailers)["grpc-status-details-bin"])


def test_trailers_carry_the_rich_status_with_retry_info():
    m = map_error(BackendUnavailable("milvus down", retry_after=7))
    trailers = error_trailers(m, "req-1")
    status = _details(trailers)
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0] and status.message == m.message
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and status.details[-1].Unpack(retry)
    assert (info.reason, info.metadata["request_id"]) == ("backend_unavailable", "req-1")
    assert retry.retry_delay.seconds == 7
    assert ("retry-after", "7") in trailers and ("x-request-id", "req-1") in trailers


def test_trailers_name_the_field_of_a_bad_request():
    m = map_error(PIIBlocked(["US_SSN"]))
    status = _details(error_trailers(m, None))
    bad = error_details_pb2.BadRequest()
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert status.details[1].Unpack(bad) and bad.field_violations[0].field == "messages"
    assert "US_SSN" in bad.field_violations[0].description
