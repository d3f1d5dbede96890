"""`finserve adapters list|show|verify|demo` on a registry holding a really trained adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_configs import tiny_config, write_config
from typer.testing import CliRunner

from finserve.cli import app
from finserve.contracts import AdapterCorrupt, AdapterRegistry

pytestmark = pytest.mark.slow
runner = CliRunner()


def copy_registry(src: AdapterRegistry, dest: Path) -> AdapterRegistry:
    shutil.copytree(src.root, dest)
    return AdapterRegistry(dest)


def test_list_and_show(trained_registry: AdapterRegistry) -> None:
    listed = runner.invoke(app, ["adapters", "list", "--registry", trained_registry.root, "--json"])
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.stdout)
    assert (entry["name"], entry["version"]) == ("tiny-intent", "0.1.0")
    table = runner.invoke(app, ["adapters", "list", "--registry", trained_registry.root])
    assert "tiny-intent@0.1.0" in table.stdout
    shown = runner.invoke(app, ["adapters", "show", "tiny-intent@0.1.0", "--registry", trained_registry.root])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["checksum"] == entry["checksum"]
    missing = runner.invoke(
        app, ["adapters", "show", "tiny-intent@9.0.0", "--registry", trained_registry.root]
    )
    assert missing.exit_code == 1


def test_verify_detects_a_tampered_weight_file(trained_registry: AdapterRegistry, tmp_path: Path) -> None:
    registry = copy_registry(trained_registry, tmp_path / "registry")
    ok = runner.invoke(app, ["adapters", "verify", "--registry", registry.root])
    assert ok.exit_code == 0 and "ok       tiny-intent@0.1.0" in ok.stdout

    weights = tmp_path / "registry" / "tiny-intent" / "0.1.0" / "intent_head.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF  # one flipped bit in the head's last float
    weights.write_bytes(bytes(blob))
    bad = runner.invoke(app, ["adapters", "verify", "tiny-intent@0.1.0", "--registry", registry.root])
    assert bad.exit_code == 1
    assert "FAILED" in bad.stdout and "intent_head.safetensors" in bad.stdout
    with pytest.raises(AdapterCorrupt):
        registry.fetch("tiny-intent@0.1.0")  # serving refuses it too


def test_verify_detects_an_added_file(trained_registry: AdapterRegistry, tmp_path: Path) -> None:
    registry = copy_registry(trained_registry, tmp_path / "registry")
    (tmp_path / "registry" / "tiny-intent" / "0.1.0" / "extra.bin").write_bytes(b"\0")
    bad = runner.invoke(app, ["adapters", "verify", "--registry", registry.root])
    assert bad.exit_code == 1 and "extra.bin: not in manifest" in bad.stdout


def test_demo_trains_missing_versions_and_keeps_existing_ones(tmp_path: Path) -> None:
    configs = [
        write_config(tmp_path / f"v{v}.yaml", tiny_config(name="demo", version=v)) for v in ("1.0.0", "1.1.0")
    ]
    args = ["adapters", "demo", "--registry", str(tmp_path / "registry")]
    for c in configs:
        args += ["--config", str(c)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.count("trained  demo@") == 2
    second = runner.invoke(app, args)
    assert second.stdout.count("kept     demo@") == 2
    assert AdapterRegistry(tmp_path / "registry").versions("demo") == ["1.0.0", "1.1.0"]


def test_seed_copies_shipped_versions_once_and_repairs_a_tampered_copy(
    trained_registry: AdapterRegistry, tmp_path: Path
) -> None:
    target = tmp_path / "registry"
    args = ["adapters", "seed", "--from", str(trained_registry.root), "--registry", str(target)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "seeded   tiny-intent@0.1.0" in first.stdout
    seeded = AdapterRegistry(target)
    assert (
        seeded.verify("tiny-intent@0.1.0").checksum == trained_registry.manifest("tiny-intent@0.1.0").checksum
    )
    assert "kept     tiny-intent@0.1.0" in runner.invoke(app, args).stdout
    (target / "tiny-intent" / "0.1.0" / "adapter_model.safetensors").write_bytes(b"not weights")
    repaired = runner.invoke(app, args)
    assert repaired.exit_code == 0 and "seeded   tiny-intent@0.1.0" in repaired.stdout
    seeded.verify("tiny-intent@0.1.0")


def test_the_shipped_default_version_verifies() -> None:
    """What `make up` serves without training: in the repository, intact (checksums as its manifest says)."""
    from finserve.serving.paths import shipped_registry

    shipped = AdapterRegistry(shipped_registry())
    manifest = shipped.verify("banking77@2.1.0")
    assert manifest.training["answers"]["examples"] > 0
    assert (shipped_registry() / "banking77" / "2.1.0" / "intent_lora" / "adapter_config.json").is_file()
