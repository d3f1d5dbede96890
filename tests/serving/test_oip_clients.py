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
    assert meta["name"] == "finserve" and meta["extensions"] == [] and meta["version"]
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
# finserve answers in typed contents (bytes_contents), which the protocol allows; tritonclient's as_numpy
# reads those with np.array(copy=False), which numpy 2 refuses: read the response message instead.
outputs = {t.name: t.contents.bytes_contents[0].decode() for t in r.get_response().outputs}
out["text"], out["adapter"] = outputs["text"], outputs["adapter"]
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
    assert out["text"].strip() and out["adapter"] == VERSION
    assert out["unknown_model"] == "StatusCode.NOT_FOUND" and out["no_key"] == "StatusCode.UNAUTHENTICATED"
    [line] = [x for x in read_records(served.config.audit.path) if x["request_id"] == "oip-grpc-v"]
    assert line["status"] == 200 and line["route"] == "override"
