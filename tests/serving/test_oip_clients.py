"""The Open Inference Protocol v2 as a KServe / Triton client sees it: tritonclient's REST and gRPC
clients (NVIDIA's implementation of the same protocol) against the whole in-process stack served by
uvicorn, with gRPC beside it. The server metadata, readiness per model and per version, metadata of a
version and inference pinned to a version must all be what the clients expect."""

from __future__ import annotations

import numpy as np
import pytest

from finserve.serving.audit import read_records

pytestmark = pytest.mark.slow

MODEL = "finserve-banking"
VERSION = "base@0.0.0"  # the default route's stable adapter
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def rest(served):
    import tritonclient.http as http

    client = http.InferenceServerClient(served.base.removeprefix("http://"), network_timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(served):
    import tritonclient.grpc as tgrpc

    client = tgrpc.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    yield client
    client.close()


def auth(served) -> dict[str, str]:
    return {"authorization": f"Bearer {served.key}"}


def test_rest_server_and_model_readiness_and_metadata(rest):
    assert rest.is_server_live() and rest.is_server_ready()
    meta = rest.get_server_metadata()
    assert meta["name"] == "finserve" and meta["extensions"] == [] and meta["version"]
    assert rest.is_model_ready(MODEL)
    assert rest.is_model_ready(MODEL, model_version=VERSION)
    assert not rest.is_model_ready(MODEL, model_version="base@9.9.9")  # not a version of this model: 404
    assert not rest.is_model_ready("nope")
    model = rest.get_model_metadata(MODEL)
    assert model["versions"] == [VERSION] and [i["name"] for i in model["inputs"]] == ["text"]
    assert rest.get_model_metadata(MODEL, model_version=VERSION)["versions"] == [VERSION]


def test_rest_unknown_version_metadata_is_not_found(rest):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as err:
        rest.get_model_metadata(MODEL, model_version="base@9.9.9")
    assert "not served" in str(err.value) and "9.9.9" not in str(err.value)


def _rest_infer(rest, served, question: str, **kwargs):
    import tritonclient.http as http

    text = http.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([question.encode()], dtype=object), binary_data=False)
    outputs = [http.InferRequestedOutput(n, binary_data=False) for n in ("text", "adapter", "request_id")]
    return rest.infer(MODEL, [text], outputs=outputs, headers=auth(served), **kwargs)


def test_rest_infer_latest_and_pinned_to_a_version(rest, served):
    for kwargs in ({}, {"model_version": VERSION}):
        result = _rest_infer(rest, served, f"My card {CARD} has not arrived", request_id="oip-rest", **kwargs)
        [answer] = result.as_numpy("text")
        assert (answer.decode() if isinstance(answer, bytes) else answer).strip()
        assert [a.decode() if isinstance(a, bytes) else a for a in result.as_numpy("adapter")] == [VERSION]
        assert CARD not in str(result.get_response())
    lines = [x for x in read_records(served.config.audit.path) if x["request_id"] == "oip-rest"]
    assert [x["status"] for x in lines] == [200, 200]
    assert [x["route"] for x in lines] == ["stable", "override"]  # the version in the path pins the adapter


def test_rest_infer_needs_the_key(rest):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    text = http.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hi"], dtype=object), binary_data=False)
    with pytest.raises(InferenceServerException) as err:
        rest.infer(MODEL, [text], outputs=[http.InferRequestedOutput("text", binary_data=False)])
    assert err.value.status() == "401"


def test_grpc_client_readiness_metadata_and_infer(grpc_client, served):
    import tritonclient.grpc as tgrpc
    from tritonclient.utils import InferenceServerException

    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert grpc_client.get_server_metadata().name == "finserve"
    assert grpc_client.is_model_ready(MODEL) and grpc_client.is_model_ready(MODEL, model_version=VERSION)
    assert not grpc_client.is_model_ready(MODEL, model_version="base@9.9.9")
    assert grpc_client.get_model_metadata(MODEL).versions == [VERSION]
    text = tgrpc.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"How do I activate my card?"], dtype=object))
    result = grpc_client.infer(MODEL, [text], model_version=VERSION, headers=auth(served), request_id="oip-grpc-v")
    assert result.as_numpy("text")[0].decode().strip()
    assert result.as_numpy("adapter")[0].decode() == VERSION
    with pytest.raises(InferenceServerException) as err:
        grpc_client.infer("nope", [text], headers=auth(served))
    assert err.value.status() == "StatusCode.NOT_FOUND"
