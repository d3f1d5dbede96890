"""The adapter registry: publish, list, fetch, and tamper detection (local and fsspec memory://)."""

from __future__ import annotations

import json

import pytest

from finserve.contracts import AdapterCorrupt, AdapterManifest, AdapterNotFound, AdapterRegistry


def adapter_folder(tmp_path, payload: bytes = b"weights"):
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_model.safetensors").write_bytes(payload)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    return folder


def manifest(version: str) -> AdapterManifest:
    return AdapterManifest(name="banking", version=version, base_model="smollm2", checksum="")


@pytest.fixture(params=["local", "memory"])
def registry(request, tmp_path):
    if request.param == "local":
        return AdapterRegistry(tmp_path / "registry")
    return AdapterRegistry(f"memory://registry-{tmp_path.name}", cache_dir=tmp_path / "cache")


def test_publish_list_latest_and_fetch(registry, tmp_path):
    registry.publish(adapter_folder(tmp_path), manifest("1.0.0"))
    registry.publish(adapter_folder(tmp_path, b"other"), manifest("1.10.0"))
    registry.publish(adapter_folder(tmp_path, b"third"), manifest("1.2.0"))
    assert registry.versions("banking") == ["1.0.0", "1.2.0", "1.10.0"]
    assert str(registry.latest("banking")) == "banking@1.10.0"
    got, path = registry.fetch("banking@1.2.0")
    assert got.checksum and (path / "adapter_model.safetensors").read_bytes() == b"third"


def test_publishing_a_version_twice_is_refused(registry, tmp_path):
    registry.publish(adapter_folder(tmp_path), manifest("1.0.0"))
    with pytest.raises(FileExistsError):
        registry.publish(adapter_folder(tmp_path), manifest("1.0.0"))


def test_missing_versions_raise_not_found(registry):
    with pytest.raises(AdapterNotFound):
        registry.manifest("banking@9.9.9")
    with pytest.raises(AdapterNotFound):
        registry.latest("nothing")


def test_tampered_file_is_detected(tmp_path):
    registry = AdapterRegistry(tmp_path / "registry")
    registry.publish(adapter_folder(tmp_path), manifest("1.0.0"))
    target = tmp_path / "registry" / "banking" / "1.0.0" / "adapter_model.safetensors"
    target.write_bytes(b"evil")
    with pytest.raises(AdapterCorrupt, match="adapter_model.safetensors"):
        registry.verify("banking@1.0.0")
    with pytest.raises(AdapterCorrupt):
        registry.fetch("banking@1.0.0")


def test_added_file_is_detected(tmp_path):
    registry = AdapterRegistry(tmp_path / "registry")
    registry.publish(adapter_folder(tmp_path), manifest("1.0.0"))
    (tmp_path / "registry" / "banking" / "1.0.0" / "extra.bin").write_bytes(b"x")
    with pytest.raises(AdapterCorrupt, match="not in manifest"):
        registry.verify("banking@1.0.0")
