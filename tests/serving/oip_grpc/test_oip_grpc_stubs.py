"""The committed OIP v2 gRPC stubs: generated from the proto as it is, loadable by the installed
protobuf and grpcio, and every RPC answered by finserve's servicer."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

from finserve.serving.oip_grpc import ADD_SERVICER
from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
from finserve.serving.oip_grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from finserve.serving.oip_grpc.servicer import InferenceServicer

ROOT = Path(__file__).resolve().parents[3]
STUBS = ROOT / "serving" / "oip_grpc"
RPCS = [
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
]


def _normalised(path: Path) -> bytes:
    # grpcio-tools stamps its own patch release into the _grpc stub (GRPC_GENERATED_VERSION); any
    # 1.80.x generates the same code, and grpcio only checks that it is at least that version.
    return re.sub(
        rb"GRPC_GENERATED_VERSION = '1\.80\.\d+'", b"GRPC_GENERATED_VERSION = '1.80.x'", path.read_bytes()
    )


def test_committed_stubs_match_the_proto(tmp_path):
    subprocess.run(
        [sys.executable, "-P", str(ROOT / "scripts" / "gen_oip_grpc.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    names = ["grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py"]
    stale = [n for n in names if _normalised(tmp_path / n) != _normalised(STUBS / n)]
    assert not stale, f"regenerate with `make proto`: {stale}"


def test_descriptor_is_kserves_inference_service():
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert [m.name for m in service.methods] == RPCS
    infer = service.methods_by_name["ModelInfer"]
    assert (infer.input_type.full_name, infer.output_type.full_name) == (
        "inference.ModelInferRequest",
        "inference.ModelInferResponse",
    )
    choice = pb.InferParameter.DESCRIPTOR.oneofs_by_name["parameter_choice"]
    assert [f.name for f in choice.fields] == ["bool_param", "int64_param", "string_param"]


def test_every_rpc_is_implemented_and_takes_rays_context_keyword():
    # Ray Serve's proxy passes the context only to a parameter named grpc_context; a method left to
    # the generated base class would take `context` and fail with a traceback sent to the client.
    for name in RPCS:
        method = getattr(InferenceServicer, name)
        assert method is not getattr(pb_grpc.GRPCInferenceServiceServicer, name), name
        assert list(inspect.signature(method).parameters) == ["self", "request", "grpc_context"], name
        assert inspect.iscoroutinefunction(method), name


def test_servicer_function_path_is_importable_as_ray_imports_it():
    from ray.serve.config import gRPCOptions

    (fn,) = gRPCOptions(grpc_servicer_functions=[ADD_SERVICER]).grpc_servicer_func_callable
    assert fn is pb_grpc.add_GRPCInferenceServiceServicer_to_server
