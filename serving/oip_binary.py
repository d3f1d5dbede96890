"""The Open Inference Protocol's binary tensor data extension (REST), and BYTES elements in raw form.

Triton's and KServe's Python clients send tensors in binary by default (``set_data_from_numpy(...,
binary_data=True)``): the body is the JSON request, then the tensors' bytes back to back; the
``Inference-Header-Content-Length`` header says where the JSON ends, and each binary input carries
``parameters.binary_data_size`` instead of ``data``. A BYTES tensor in raw form (here, and in gRPC's
``raw_input_contents`` / ``raw_output_contents``) is each element as a 4-byte little-endian length and
its bytes. Outputs asked for in binary (``parameters.binary_data`` on a requested output, or the
request's ``binary_data_output``) are answered the same way. Pure functions: no I/O.

Error messages name the field, never a tensor's name or bytes (client input).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import invalid_field

HEADER = "inference-header-content-length"
"""The header (lower case, as ASGI and gRPC metadata carry it) giving the JSON part's length in bytes."""
_HEADER_FIELD = "Inference-Header-Content-Length"  # as errors name it
EXTENSION = "binary_tensor_data"
"""The name ``GET /v2`` lists among the server's extensions."""


def split_raw_bytes(raw: bytes, field: str = "raw_input_contents") -> list[bytes]:
    """Length-prefixed BYTES elements."""
    out, i = [], 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise invalid_field(field, "truncated element length")
        (n,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + n > len(raw):
            raise invalid_field(field, "element longer than the data")
        out.append(raw[i : i + n])
        i += n
    return out


def join_raw_bytes(elements: Iterable[bytes]) -> bytes:
    """The inverse of :func:`split_raw_bytes`."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def split_body(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part and the binary part of a request body (all JSON when the header is absent)."""
    if header_length is None:
        return raw, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 < n <= len(raw):
        raise invalid_field(_HEADER_FIELD, "must be the JSON part's length in bytes, within the body")
    return raw[:n], raw[n:]


def binary_size(parameters: dict[str, Any] | None, field: str) -> int | None:
    """An input's ``binary_data_size``, None when its data is in JSON."""
    size = (parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise invalid_field(field, "must be a non-negative integer")
    return size


def attach_binary_inputs(body: dict[str, Any], blob: bytes) -> dict[str, Any]:
    """The JSON request with each binary input's ``data`` read from ``blob``, in the order of the inputs.

    BYTES inputs become lists of strings where they decode as UTF-8 (the question must); other datatypes are
    never read by finserve and keep no data. The sizes must account for the whole blob.
    """
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        return body
    at = 0
    out = []
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            out.append(tensor)
            continue
        field = f"inputs[{i}].parameters.binary_data_size"
        size = binary_size(tensor.get("parameters"), field)
        if size is None:
            out.append(tensor)
            continue
        if "data" in tensor:
            raise invalid_field(f"inputs[{i}].data", "not allowed with binary_data_size")
        if at + size > len(blob):
            raise invalid_field(field, "larger than the binary data sent")
        chunk, at = blob[at : at + size], at + size
        data: list[Any] = []
        if tensor.get("datatype") == "BYTES":
            data = [_text(e, f"inputs[{i}].data") for e in split_raw_bytes(chunk, f"inputs[{i}].data")]
        params = {k: v for k, v in tensor["parameters"].items() if k != "binary_data_size"}
        out.append({**tensor, "data": data, "parameters": params or None})
    if at != len(blob):
        raise invalid_field(_HEADER_FIELD, "the binary data is longer than the inputs' binary_data_size")
    return {**body, "inputs": out}


def _text(element: bytes, field: str) -> str:
    try:
        return element.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_field(field, "BYTES elements must be UTF-8 text") from None


def encode_response(response: dict[str, Any], binary: Sequence[str]) -> tuple[bytes, int | None]:
    """The response body, with the outputs named in ``binary`` moved after the JSON in raw form; and the JSON
    part's length for the header (None when nothing is binary: plain JSON)."""
    if not binary:
        return json.dumps(response, ensure_ascii=False).encode(), None
    blobs = []
    outputs = []
    for tensor in response["outputs"]:
        if tensor["name"] not in binary:
            outputs.append(tensor)
            continue
        blob = join_raw_bytes(str(x).encode("utf-8") for x in tensor["data"])
        blobs.append(blob)
        rest = {k: v for k, v in tensor.items() if k != "data"}
        outputs.append(
            {**rest, "parameters": {**(tensor.get("parameters") or {}), "binary_data_size": len(blob)}}
        )
    head = json.dumps({**response, "outputs": outputs}, ensure_ascii=False).encode()
    return head + b"".join(blobs), len(head)
