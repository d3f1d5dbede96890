"""Adapter folders: both PEFT layouts are found, and broken files fail before a model sees them (read_adapter reads
and checks everything before ModelRunner.load_adapter touches the model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from finserve.contracts import AdapterCorrupt
from finserve.serving.inference.adapter_files import adapter_folder
from finserve.serving.inference.lora import read_adapter


def write_adapter(folder: Path, peft_type: str = "LORA") -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, "r": 2}))
    save_file(
        {
            "base_model.model.q_proj.lora_A.weight": torch.zeros(2, 4),
            "base_model.model.q_proj.lora_B.weight": torch.zeros(4, 2),
        },
        str(folder / "adapter_model.safetensors"),
    )
    return folder


def test_adapter_at_top_or_in_one_subfolder(tmp_path: Path) -> None:
    top = write_adapter(tmp_path / "top")
    assert adapter_folder(top) == top
    nested = write_adapter(tmp_path / "nested" / "banking77")
    assert adapter_folder(tmp_path / "nested") == nested


def test_two_or_no_configs_are_ambiguous(tmp_path: Path) -> None:
    write_adapter(tmp_path / "two" / "a")
    write_adapter(tmp_path / "two" / "b")
    with pytest.raises(AdapterCorrupt, match="2 adapter configs"):
        adapter_folder(tmp_path / "two")
    (tmp_path / "none").mkdir()
    with pytest.raises(AdapterCorrupt, match="0 adapter configs"):
        adapter_folder(tmp_path / "none")


def test_valid_files_pass(tmp_path: Path) -> None:
    assert set(read_adapter(write_adapter(tmp_path / "ok")).modules) == {"q_proj"}


@pytest.mark.parametrize("breakage", ["garbage_weights", "missing_weights", "bad_json", "not_lora"])
def test_broken_files_raise_adapter_corrupt(tmp_path: Path, breakage: str) -> None:
    folder = write_adapter(tmp_path / "a", peft_type="PREFIX_TUNING" if breakage == "not_lora" else "LORA")
    if breakage == "garbage_weights":
        (folder / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    elif breakage == "missing_weights":
        (folder / "adapter_model.safetensors").unlink()
    elif breakage == "bad_json":
        (folder / "adapter_config.json").write_text("{")
    with pytest.raises(AdapterCorrupt):
        read_adapter(folder)
