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


def auth(served) -> dict[str, str]:
    return {"authorization": f"Bearer {served.key}"}


def test_rest_server_and_model_readiness_and_metadata(rest, served):
    h = auth(served)  # with auth on, only the health probes are open (docs/security.md)
    assert rest.is_server_live() and rest.is_server_ready()
    meta = rest.get_server_metadata(headers=h)
    assert meta["name"] == "finserve" and meta["extensions"] == ["binary_tensor_data"] and meta["version"]
    assert rest.is_model_ready(MODEL, headers=h)
    assert rest.is_model_ready(MODEL, model_version=VERSION, headers=h)
    assert not rest.is_model_ready(
        MODEL, model_version="base@9.9.9", headers=h
    )  # not a version of this model: 404
    assert not rest.is_model_ready("nope", headers=h)
    model = rest.get_model_metadata(MODEL, headers=h)
    assert model["versions"] == [VERSION] and [i["name"] for i in model["inputs"]] == ["text"]
    assert rest.get_model_metadata(MODEL, model_version=VERSION, headers=h)["versions"] == [VERSION]


def test_rest_unknown_version_metadata_is_not_found(rest, served):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as err:
        rest.get_model_metadata(MODEL, model_version="base@9.9.9", headers=auth(served))
    assert "not served" in str(err.value) and "9.9.9" not in str(err.value)


def _rest_infer(rest, question: str, **kwargs):
    import tritonclient.http as http

    text = http.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([question.encode()], dtype=object), binary_data=False)
    outputs = [http.InferRequestedOutput(n, binary_data=False) for n in ("text", "adapter", "request_id")]
    return rest.infer(MODEL, [text], outputs=outputs, **kwargs)


def test_rest_infer_latest_and_pinned_to_a_version(rest, served):
    for i, kwargs in enumerate(({}, {"model_version": VERSION})):
        result = _rest_infer(
            rest,
            f"My card {CARD} has not arrived",
            request_id=f"oip-id-{i}",
            headers={**auth(served), "x-request-id": f"oip-rest-{i}"},
            **kwargs,
        )
        [answer] = result.as_numpy("text")
        assert (answer.decode() if isinstance(answer, bytes) else answer).strip()
        assert [a.decode() if isinstance(a, bytes) else a for a in result.as_numpy("adapter")] == [VERSION]
        assert result.get_response()["id"] == f"oip-id-{i}"
        assert CARD not in str(result.get_response())
    lines = {
        x["request_id"]: x
        for x in read_records(served.config.audit.path)
        if x["request_id"].startswith("oip-rest")
    }
    assert [lines[f"oip-rest-{i}"]["status"] for i in (0, 1)] == [200, 200]
    # The version in the path pins the adapter, as gRPC's model_version and the x-finserve-adapter header do.
    assert [lines[f"oip-rest-{i}"]["route"] for i in (0, 1)] == ["stable", "override"]


def test_rest_infer_with_the_clients_defaults_binary_tensors_both_ways(rest, served):
    # tritonclient (as KServe's client) sends tensors in binary unless told otherwise, and asks for binary
    # outputs: the binary tensor data extension, on its own defaults.
    import tritonclient.http as http

    text = http.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([f"My card {CARD} has not arrived".encode(), b"Is there a fee?"]))
    h = {**auth(served), "x-request-id": "oip-rest-binary"}
    picked = rest.infer(
        MODEL,
        [text],
        outputs=[http.InferRequestedOutput("adapter"), http.InferRequestedOutput("text")],
        headers=h,
    )
    assert [o["name"] for o in picked.get_response()["outputs"]] == ["adapter", "text"]
    answers = [a.decode() for a in picked.as_numpy("text")]
    assert len(answers) == 2 and all(a.strip() for a in answers) and CARD not in " ".join(answers)
    assert [a.decode() for a in picked.as_numpy("adapter")] == [VERSION, VERSION]
    everything = rest.infer(MODEL, [text], headers={**auth(served), "x-request-id": "oip-rest-binary-all"})
    assert {o["name"] for o in everything.get_response()["outputs"]} == {
        "text",
        "intent",
        "adapter",
        "request_id",
        "citations",
    }
    assert [r.decode() for r in everything.as_numpy("request_id")] == [
        "oip-rest-binary-all-0",
        "oip-rest-binary-all-1",
    ]
    lines = [
        x for x in read_records(served.config.audit.path) if x["request_id"].startswith("oip-rest-binary")
    ]
    assert len(lines) == 4 and {x["status"] for x in lines} == {200}
    assert CARD not in str(lines)


def test_rest_infer_refuses_an_output_it_does_not_have(rest, served):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    text = http.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hi"], dtype=object))
    with pytest.raises(InferenceServerException) as err:
        rest.infer(MODEL, [text], outputs=[http.InferRequestedOutput("logits")], headers=auth(served))
    assert (
        err.value.status() == "400" and "outputs[0].name" in str(err.value) and "logits" not in str(err.value)
    )


def test_rest_infer_needs_the_key(rest):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    text = http.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hi"], dtype=object), binary_data=False)
    with pytest.raises(InferenceServerException) as err:
        rest.infer(MODEL, [text], outputs=[http.InferRequestedOutput("text", binary_data=False)])
    assert err.value.status() == "401"


# tritonclient.grpc registers the same protobuf package (``inference``) as finserve's own stubs, and one
# process has one descriptor pool: its client runs in a process of its own, as a user's would.
GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

url, key, model, version = sys.argv[1:]
c = tgrpc.InferenceServerClient(url)
auth = {"authorization": "Bearer " + key}  # with auth on, every RPC but the probes needs it
out = {"live": c.is_server_live(), "ready": c.is_server_ready(), "name": c.get_server_metadata(headers=auth).name,
       "model_ready": c.is_model_ready(model, headers=auth),
       "version_ready": c.is_model_ready(model, model_version=version, headers=auth),
       "other_version_ready": c.is_model_ready(model, model_version="base@9.9.9", headers=auth),
       "versions": list(c.get_model_metadata(model, headers=auth).versions)}
text = tgrpc.InferInput("text", [1], "BYTES")
text.set_data_from_numpy(np.array([b"How do I activate my card?"], dtype=object))
r = c.infer(model, [text], model_version=version, headers={**auth, "x-request-id": "oip-grpc-v"})
# tritonclient sends raw_input_contents and is answered in raw_output_contents: its own as_numpy reads them
out["text"], out["adapter"] = r.as_numpy("text")[0].decode(), r.as_numpy("adapter")[0].decode()
picked = c.infer(model, [text], outputs=[tgrpc.InferRequestedOutput("intent")], headers=auth)
out["picked"] = [t.name for t in picked.get_response().outputs]
try:
    c.infer("nope", [text], headers=auth)
except InferenceServerException as e:
    out["unknown_model"] = e.status()
try:
    c.infer(model, [text])
except InferenceServerException as e:
    out["no_key"] = e.status()
print(json.dumps(out))
"""


def test_grpc_client_readiness_metadata_and_infer(served):
    import json
    import subprocess
    import sys

    run = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            GRPC_CLIENT,
            f"127.0.0.1:{served.grpc_port}",
            served.key,
            MODEL,
            VERSION,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["live"] and out["ready"] and out["name"] == "finserve"
    assert out["model_ready"] and out["version_ready"] and not out["other_version_ready"]
    assert out["versions"] == [VERSION]
    assert out["text"].strip() and out["adapter"] == VERSION and out["picked"] == ["intent"]
    assert out["unknown_model"] == "StatusCode.NOT_FOUND" and out["no_key"] == "StatusCode.UNAUTHENTICATED"
    [line] = [x for x in read_records(served.config.audit.path) if x["request_id"] == "oip-grpc-v"]
    assert line["status"] == 200 and line["route"] == "override"
