"""A published version carries its generator LoRA as a GGUF LoRA too, under the registry checksum."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from finserve.contracts import AdapterCorrupt, AdapterManifest, AdapterRef, AdapterRegistry
from finserve.serving.inference.base_model import BASE_MODEL_ID
from finserve.training.package import save_gguf_lora

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "adapters" / "banking77" / "2.1.0"


def test_the_gguf_lora_is_published_and_checksummed_with_the_peft_files(tmp_path: Path) -> None:
    folder = tmp_path / "version"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(SHIPPED / name, folder / name)
    save_gguf_lora(folder)
    assert (folder / "adapter.gguf").stat().st_size > 0
    registry = AdapterRegistry(tmp_path / "registry")
    manifest = registry.publish(
        folder, AdapterManifest(name="b77", version="9.0.0", base_model=BASE_MODEL_ID, checksum="")
    )
    assert "adapter.gguf" in manifest.files
    ref = AdapterRef(name="b77", version="9.0.0")
    registry.verify(ref)
    published = registry.local_path(ref, verify=False) / "adapter.gguf"
    data = published.read_bytes()
    published.write_bytes(
        data[:-1] + bytes([data[-1] ^ 0xFF])
    )  # one byte changed: the version no longer verifies
    with pytest.raises(AdapterCorrupt):
        registry.verify(ref)
