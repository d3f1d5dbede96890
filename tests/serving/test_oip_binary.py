"""The binary tensor data extension and raw BYTES elements, as Triton's and KServe's clients write them."""

from __future__ import annotations

import json

import pytest

from finserve.serving.errors import InvalidRequest
from finserve.serving.oip import parse_infer_request, requested_outputs, to_chat_requests
from finserve.serving.oip_binary import (
    attach_binary_inputs,
    encode_response,
    join_raw_bytes,
    split_body,
    split_raw_bytes,
)


def _body(inputs: list[dict], blob: bytes, **extra: object) -> tuple[bytes, str]:
    head = json.dumps({"inputs": inputs, **extra}).encode()
    return head + blob, str(len(head))


def test_raw_elements_round_trip_with_empty_and_non_ascii_ones() -> None:
    elements = [b"Where is my card?", b"", "€5 fee".encode()]
    raw = join_raw_bytes(elements)
    assert raw[:4] == (17).to_bytes(4, "little")
    assert split_raw_bytes(raw) == elements


@pytest.mark.parametrize("raw", [b"\x05\x00", b"\x05\x00\x00\x00abc"])
def test_truncated_raw_elements_are_refused_naming_the_field(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as err:
        split_raw_bytes(raw, "inputs[0].data")
    assert err.value.param == "inputs[0].data"


def test_a_binary_text_input_becomes_questions_beside_an_ignored_float_input() -> None:
    text = join_raw_bytes([b"How do I activate my card?", b"Is there a fee?"])
    floats = bytes(8)  # two FP32 zeros: not read by finserve, but their bytes must be accounted for
    raw, length = _body(
        [
            {
                "name": "text",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(text)},
            },
            {"name": "other", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        ],
        text + floats,
    )
    req = parse_infer_request(raw, length)
    assert req.inputs[0].data == ["How do I activate my card?", "Is there a fee?"]
    assert req.inputs[0].parameters is None and req.inputs[1].data == []
    assert [c.messages[0].content for c in to_chat_requests("m", req, 4)] == [
        "How do I activate my card?",
        "Is there a fee?",
    ]


@pytest.mark.parametrize(
    ("inputs", "blob", "length", "param"),
    [
        # the header points past the body
        (
            [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}],
            b"",
            "99999",
            "Inference-Header-Content-Length",
        ),
        (
            [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}],
            b"",
            "x",
            "Inference-Header-Content-Length",
        ),
        # more bytes than the inputs claim
        (
            [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}],
            join_raw_bytes([b"hi"]) + b"extra",
            None,
            "Inference-Header-Content-Length",
        ),
        # fewer
        (
            [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 60}}],
            join_raw_bytes([b"hi"]),
            None,
            "inputs[0].parameters.binary_data_size",
        ),
        (
            [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": -1}}],
            b"",
            None,
            "inputs[0].parameters.binary_data_size",
        ),
        # both forms at once
        (
            [
                {
                    "name": "text",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": ["a"],
                    "parameters": {"binary_data_size": 6},
                }
            ],
            join_raw_bytes([b"hi"]),
            None,
            "inputs[0].data",
        ),
        # not UTF-8
        (
            [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}],
            join_raw_bytes([b"\xff\xfe"]),
            None,
            "inputs[0].data",
        ),
    ],
)
def test_inconsistent_binary_requests_are_refused_naming_the_field(
    inputs: list[dict], blob: bytes, length: str | None, param: str
) -> None:
    raw, header = _body(inputs, blob)
    with pytest.raises(InvalidRequest) as err:
        parse_infer_request(raw, length or header)
    assert err.value.param == param


def test_a_json_part_that_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_infer_request(b"{not json" + join_raw_bytes([b"hi"]), "9")
    assert err.value.param == "body"


def test_without_the_header_the_body_is_all_json() -> None:
    assert split_body(b'{"a": 1}', None) == (b'{"a": 1}', b"")
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}
    assert attach_binary_inputs(body, b"") == body


def test_nested_json_data_is_read_in_row_major_order() -> None:
    raw = json.dumps(
        {"inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["first"], ["second"]]}]}
    ).encode()
    req = parse_infer_request(raw, None)
    assert [c.messages[0].content for c in to_chat_requests("m", req, 4)] == ["first", "second"]


def _request(**extra: object):  # noqa: ANN202
    raw = json.dumps(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}], **extra}
    )
    return parse_infer_request(raw.encode(), None)


def test_requested_outputs_pick_order_and_say_which_are_binary() -> None:
    assert requested_outputs(_request()) == (["text", "intent", "adapter", "request_id", "citations"], [])
    everything = requested_outputs(_request(parameters={"binary_data_output": True}))
    assert everything[1] == everything[0]
    picked = _request(
        outputs=[{"name": "adapter"}, {"name": "text", "parameters": {"binary_data": True}}],
        parameters={"binary_data_output": False},
    )
    assert requested_outputs(picked) == (["adapter", "text"], ["text"])
    # binary_data_output is the default for outputs that say nothing, and is not a generation parameter
    req = _request(outputs=[{"name": "text"}], parameters={"binary_data_output": True, "max_tokens": 8})
    assert requested_outputs(req) == (["text"], ["text"])
    assert to_chat_requests("m", req, 4)[0].max_tokens == 8


def test_an_unknown_output_is_refused_without_echoing_its_name() -> None:
    req = _request(outputs=[{"name": "text"}, {"name": "4111111111111111"}])
    with pytest.raises(InvalidRequest) as err:
        to_chat_requests("m", req, 4)
    assert err.value.param == "outputs[1].name" and "4111" not in str(err.value)


def test_binary_outputs_follow_the_json_with_their_sizes() -> None:
    response = {
        "model_name": "m",
        "id": "r",
        "outputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["€5 fee", "ok"]},
            {"name": "intent", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        ],
    }
    body, length = encode_response(response, ["text"])
    assert length is not None
    head, blob = json.loads(body[:length]), body[length:]
    [text, intent] = head["outputs"]
    assert "data" not in text and text["parameters"]["binary_data_size"] == len(blob)
    assert split_raw_bytes(blob) == ["€5 fee".encode(), b"ok"]
    assert intent["data"] == ["a", "b"]
    plain, none = encode_response(response, [])
    assert none is None and json.loads(plain) == response
