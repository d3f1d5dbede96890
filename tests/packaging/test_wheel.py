"""The built wheel works on its own: package-data mistakes (a data file left out of the wheel, as
serving/retrieval/data/answers.yaml once was) fail here instead of in an image.

The wheel is built from the working tree and installed, not editable, into a fresh venv. To save
minutes the third-party dependencies are borrowed from this venv's site-packages through a .pth
line (a path on sys.path, so the editable finserve's own .pth hook there is not run); finserve
itself comes only from the wheel, which the child process checks first. Then, in that venv:
`finserve --version`, `finserve model kernels` (the compiled CPU kernels came with the wheel), `finserve
ingest` on a small Banking77 CSV, and one chat completion with a card number through the whole in-process
pipeline (Presidio, MiniLM + Milvus Lite, SmolLM2, audit log).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml
from kbutil import banking77_rows

from finserve.serving.inference.base_model import ensure_base_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CARD = "4111 1111 1111 1111"
# Each one was missing from a wheel once, or would be if its folder lost its package-data entry.
DATA_FILES = (
    "finserve/serving/retrieval/data/answers.yaml",
    "finserve/serving/retrieval/data/off_topic.txt",
    "finserve/serving/guard/data/person_names.txt",
    "finserve/serving/oip_grpc/grpc_predict_v2.proto",
    "finserve/operator/examples/rollout.yaml",
    "finserve/training/configs/default.yaml",
    "finserve/training/k8s/train-cpu.yaml",
)

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import finserve
    # finserve must come from the wheel in this venv, never from the source tree.
    assert Path(finserve.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), finserve.__file__
    from fastapi.testclient import TestClient
    from finserve.serving.config import ServingConfig
    from finserve.serving.local import create_local_app
    cfg = ServingConfig.from_file(sys.argv[1])
    body = {"model": "finserve-banking", "max_tokens": 16,
            "messages": [{"role": "user", "content": "My card CARD_NUMBER never arrived, where is it?"}]}
    with TestClient(create_local_app(cfg)) as client:
        resp = client.post("/v1/chat/completions", json=body)
    print(json.dumps({"status": resp.status_code, "body": resp.json(), "file": finserve.__file__}))
    """
).replace("CARD_NUMBER", CARD)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        cwd=out,
    )
    assert build.returncode == 0, build.stderr
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' staging folder, not ours to keep
    [whl] = out.glob("finserve-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-P", "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = Path(
        subprocess.check_output(
            [
                str(root / "bin" / "python"),
                "-P",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            text=True,
        ).strip()
    )
    (purelib / "_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "pip",
            "--python",
            str(root / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    return root


def test_the_wheel_carries_every_data_file(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in DATA_FILES if f not in names]
    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools.package-data]): {missing}"
    assert any(n.endswith((".dist-info/licenses/LICENSE", ".dist-info/LICENSE")) for n in names)
    assert any(n.endswith("NOTICE") for n in names)


def test_the_wheel_carries_the_compiled_cpu_kernels_and_its_install_runs_them(wheel: Path, venv: Path):
    """setup.py compiles serving/inference/csrc into the wheel: platform-specific, one build for every
    supported CPython (stable-ABI tag), loaded from the installed package without a compiler."""
    import platform

    from finserve.serving.inference.cpu_kernels import cpu_flags, runnable_variants

    assert wheel.name.endswith(f"-cp311-abi3-linux_{platform.machine()}.whl"), wheel.name
    assert "finserve/serving/inference/_kernels.abi3.so" in zipfile.ZipFile(wheel).namelist()
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "PYTHONPATH", "FINSERVE_CPU_KERNELS")}
    env["PATH"] = str(venv / "bin")  # no compiler on the way
    shown = subprocess.run(
        [str(venv / "bin" / "finserve"), "model", "kernels"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert Path(report["extension"]).resolve().is_relative_to(venv.resolve()), report["extension"]
    runnable = runnable_variants(cpu_flags(), platform.machine())
    assert report["variant"] == (runnable[0] if runnable else None)


def test_the_installed_wheel_ingests_and_answers(venv: Path, tmp_path: Path):
    bin_ = venv / "bin"
    kb = tmp_path / "banking77"
    kb.mkdir()
    with open(kb / "train.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows(
            banking77_rows(("card_arrival", "lost_or_stolen_card", "exchange_rate"), per_intent=10)
        )
    shutil.copy(REPO / "data" / "banking77" / "categories.json", kb)
    config = tmp_path / "serving.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "retrieval": {"milvus_uri": str(tmp_path / "milvus.db"), "redis_url": None},
                "audit": {"path": str(tmp_path / "audit.jsonl")},
                # The converted base model from this machine's cache: the wheel's own code loads it.
                "generator": {
                    "registry": str(tmp_path / "registry"),
                    "model_dir": str(ensure_base_model()),
                    "max_new_tokens": 16,
                },
            }
        )
    )
    env = {
        **os.environ,
        "FINSERVE_BANKING77_CSV": str(kb / "train.csv"),
        "FINSERVE_DATA_DIR": str(tmp_path / "var"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env.pop("PYTHONPATH", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env)

    version = run(str(bin_ / "finserve"), "--version")
    assert version.returncode == 0 and version.stdout.startswith("finserve "), version.stderr

    ingest = run(str(bin_ / "finserve"), "ingest", "--config", str(config))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "built: 77 answers" in ingest.stdout, ingest.stdout

    answer = run(str(bin_ / "python"), "-P", "-c", CHILD, str(config))
    assert answer.returncode == 0, answer.stderr[-4000:]
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    assert result["status"] == 200, (result["body"], answer.stderr[-4000:])
    assert result["body"]["finserve"]["pii"]["input"] == {"CREDIT_CARD": 1}
    assert result["body"]["choices"][0]["message"]["content"].strip()
    assert CARD not in json.dumps(result["body"]) and CARD not in (tmp_path / "audit.jsonl").read_text()
