"""Base model conversion: GGUF -> safetensors once, atomically, then cached."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from finserve.serving.inference import base_model
from finserve.serving.inference.base_model import COMPLETE_MARKER, ensure_base_model, gguf_path

pytestmark = pytest.mark.slow


def test_gguf_is_found_without_importing_the_package() -> None:
    path = gguf_path()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000


def test_converted_folder_is_reused_without_converting_again(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = ensure_base_model()

    def must_not_run(*_: object) -> None:
        raise AssertionError("converted again although the folder is complete")

    monkeypatch.setattr(base_model, "convert_gguf", must_not_run)
    assert ensure_base_model() == folder
    assert (folder / COMPLETE_MARKER).is_file()
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in folder.iterdir()
    }


def test_concurrent_first_calls_convert_once_and_match_the_cached_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calls: list[Path] = []
    real = base_model.convert_gguf

    def counting(gguf: Path, out: Path) -> None:
        calls.append(out)
        real(gguf, out)

    monkeypatch.setattr(base_model, "convert_gguf", counting)
    with ThreadPoolExecutor(2) as pool:
        folders = list(pool.map(lambda _: ensure_base_model(tmp_path), range(2)))
    assert folders[0] == folders[1] == base_model.model_dir(tmp_path)
    assert len(calls) == 1
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if p.is_dir() and p != folders[0]]
    assert leftovers == []  # the temp folder became the model by rename

    fresh = load_file(str(folders[0] / "model.safetensors"))
    cached = load_file(str(ensure_base_model() / "model.safetensors"))
    assert fresh.keys() == cached.keys()
    assert all(torch.equal(fresh[k], cached[k]) for k in fresh)

    tokenizer = AutoTokenizer.from_pretrained(str(folders[0]))
    model = AutoModelForCausalLM.from_pretrained(str(folders[0]))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
