"""The tokenizer folders read out of GGUF files (base_model.tokenizer_dir) are keyed by the file's content, not its
name: two files called the same (another quantisation, another model) never share one."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from synthetic_gguf import LlamaShape, write_llama_gguf

from finserve.serving.inference.base_model import gguf_header_end, gguf_key, gguf_path, tokenizer_dir
from finserve.serving.inference.errors import TokenizerUnavailable
from finserve.serving.inference.gguf_loader import open_gguf

TINY = LlamaShape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256, context=256)
# SmolLM2's vocabulary, so its tokenizer can be copied into a small file
WITH_TOKENIZER = LlamaShape(hidden=64, layers=1, heads=4, kv_heads=2, intermediate=128, context=256)


def place(tmp_path: Path, folder: str, name: str = "model.gguf") -> Path:
    (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    return tmp_path / folder / name


def header_end(path: Path) -> int:
    """The gguf package's reading: the end of the last tensor-table entry."""
    reader = open_gguf(path)
    return max(t.field.offset + sum(int(p.nbytes) for p in t.field.parts) for t in reader.tensors)


def test_the_header_walk_ends_where_the_gguf_reader_s_tensor_table_ends(tmp_path: Path) -> None:
    for path in (write_llama_gguf(tmp_path / "tiny.gguf", TINY, "Q8_0"), gguf_path()):
        with open(path, "rb") as file:
            assert gguf_header_end(file) == header_end(path)


def test_the_key_follows_the_header_and_size_not_the_name_or_place(tmp_path: Path) -> None:
    first = write_llama_gguf(place(tmp_path, "a"), TINY, "Q8_0", seed=0)
    copy = tmp_path / "b" / "renamed.gguf"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    other_shape = write_llama_gguf(place(tmp_path, "c"), dataclasses.replace(TINY, layers=3))
    other_type = write_llama_gguf(place(tmp_path, "d"), TINY, "Q4_1", seed=0)
    # Same header, other weights: the same tokenizer, so the same key is right.
    other_weights = write_llama_gguf(place(tmp_path, "e"), TINY, "Q8_0", seed=1)
    assert gguf_key(first) == gguf_key(copy) == gguf_key(other_weights)
    assert len({gguf_key(first), gguf_key(other_shape), gguf_key(other_type)}) == 3
    assert gguf_key(first).startswith(f"{first.stat().st_size}-")


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + bytes(40))
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf_key(bad)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(write_llama_gguf(tmp_path / "whole.gguf", TINY).read_bytes()[:200])
    with pytest.raises(ValueError, match="runs past the end"):
        gguf_key(truncated)


@pytest.mark.slow
def test_two_files_of_the_same_name_get_their_own_tokenizer_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the folder was named after the file stem: the second file below was handed the first one's."""
    monkeypatch.setenv("FINSERVE_DATA_DIR", str(tmp_path / "data"))
    first = write_llama_gguf(place(tmp_path, "a"), WITH_TOKENIZER, tokenizer_from=gguf_path())
    folder = tokenizer_dir(first)
    assert (
        folder / "tokenizer.json"
    ).is_file() and folder.parent == tmp_path / "data" / "models" / "tokenizers"
    copy = tmp_path / "b" / "model.gguf"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    assert tokenizer_dir(copy) == folder  # the same content: read out once
    other = write_llama_gguf(place(tmp_path, "c"), TINY)  # the same name, no tokenizer in it
    with pytest.raises(
        TokenizerUnavailable, match="Cannot build a tokenizer"
    ):  # transformers' error, from the child
        tokenizer_dir(other)  # not the first file's folder
    assert sorted(p.name for p in folder.parent.iterdir() if not p.name.startswith(".")) == [folder.name]
