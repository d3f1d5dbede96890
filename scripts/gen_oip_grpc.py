"""Regenerates the Open Inference Protocol v2 gRPC modules from serving/oip_grpc/grpc_predict_v2.proto.

The generated modules are committed, so grpcio-tools is a development tool (the `test` extra), never
a runtime dependency. `make proto` runs this; tests/serving/oip_grpc checks the committed files match.

    python -P scripts/gen_oip_grpc.py [--out DIR]   # default: write into serving/oip_grpc/
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "serving" / "oip_grpc"
PROTO = "grpc_predict_v2.proto"
# The proto is compiled under its import path, so the stubs import each other as
# `finserve.serving.oip_grpc...` instead of a bare top-level module name.
VIRTUAL = "finserve/serving/oip_grpc"
OUTPUTS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{VIRTUAL}={SRC}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                str(SRC / PROTO),
            ]
        )
        if code != 0:
            raise SystemExit(f"protoc failed with exit code {code}")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            shutil.copyfile(Path(tmp) / VIRTUAL / name, out / name)
            written.append(out / name)
        return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SRC, help="Where to write the modules.")
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path, file=sys.stderr)


if __name__ == "__main__":
    main()
