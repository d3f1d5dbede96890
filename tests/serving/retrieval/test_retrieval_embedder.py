"""The real all-MiniLM-L6-v2: normalised vectors, both backends agree, meaning is preserved."""

from __future__ import annotations

import numpy as np

from finserve.serving.retrieval.embedder import Embedder, default_model_path, model_fingerprint


def test_vectors_are_unit_length_float32_in_input_order(embedder) -> None:
    texts = ["card", "How do I activate my new card?", "exchange rate " * 40]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Batched rows equal the same texts embedded alone (the batch path reorders by length internally).
    one_by_one = np.vstack([embedder.embed([t]) for t in texts])
    assert np.abs(vectors - one_by_one).max() < 1e-5
    assert embedder.embed([]).shape == (0, 384)


def test_large_batches_keep_order(embedder) -> None:
    texts = [f"question number {'x' * (i % 7)} {i}" for i in range(70)]
    batched = embedder.embed(texts, batch_size=8)
    assert np.abs(batched[[0, 33, 69]] - embedder.embed([texts[0], texts[33], texts[69]])).max() < 1e-5


def test_similar_questions_are_closer_than_unrelated_ones(embedder) -> None:
    a, b, c = embedder.embed(
        [
            "My card hasn't arrived yet",
            "I am still waiting for my card",
            "What is the fee for exchanging euros?",
        ]
    )
    assert a @ b > 0.6 > a @ c


def test_onnx_and_torch_backends_agree(embedder) -> None:
    torch_embedder = Embedder(threads=1, backend="torch")
    texts = ["Why was I charged twice?", "lost my phone <PHONE_NUMBER>"]
    assert np.abs(embedder.embed(texts) - torch_embedder.embed(texts)).max() < 1e-4
    assert torch_embedder.model_id == embedder.model_id


def test_onnx_export_is_reused(embedder) -> None:
    assert embedder.onnx_path is not None and embedder.onnx_path.exists()
    stamp = embedder.onnx_path.stat().st_mtime_ns
    again = Embedder(threads=1, cache_dir=embedder.onnx_path.parent)
    assert again.onnx_path == embedder.onnx_path
    assert embedder.onnx_path.stat().st_mtime_ns == stamp


def test_fingerprint_names_the_model_and_follows_its_files(tmp_path) -> None:
    source = default_model_path()
    assert model_fingerprint(source).startswith("all-MiniLM-L6-v2-")
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text("{}")
    first = model_fingerprint(tmp_path / "tiny")
    (tmp_path / "tiny" / "config.json").write_text('{"changed": true}')
    assert first.startswith("tiny-") and model_fingerprint(tmp_path / "tiny") != first


TEXTS = [
    "How do I reset my card PIN?",
    "",
    "Überweisung nach Zürich: 1.000,50 € — warum dauert das?",
    "card " * 400,  # past max_seq_length: truncated
    "What's the fee for an international transfer to the U.S.A.?\tThanks!!",
    "我的卡被吞了",
]


def test_the_batch_tokenizer_gives_what_transformers_tokenizer_gives(embedder) -> None:
    """The ONNX backend tokenizes with the tokenizers library (no transformers import in a Retriever replica):
    the same ids, masks and type ids as transformers' fast tokenizer with the same truncation and padding."""
    from transformers import AutoTokenizer

    from finserve.serving.retrieval.embedder import _batch_tokenizer

    path = default_model_path()
    ours = _batch_tokenizer(path).encode_batch(TEXTS)
    reference = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    theirs = reference(TEXTS, padding=True, truncation=True, max_length=256)
    assert [e.ids for e in ours] == theirs["input_ids"]
    assert [e.attention_mask for e in ours] == theirs["attention_mask"]
    assert [e.type_ids for e in ours] == theirs["token_type_ids"]
    assert len(ours[3].ids) == 256 and sum(ours[0].attention_mask) < 256  # truncated; padded to the longest


def test_the_onnx_embedder_loads_without_transformers_or_torch(embedder) -> None:
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from finserve.serving.retrieval.embedder import Embedder\n"
        f"e = Embedder(cache_dir=Path({str(embedder.onnx_path.parent)!r}))\n"  # the export the fixture made
        "v = e.embed(['How do I reset my card PIN?'])\n"
        "print(json.dumps({'dim': int(v.shape[1]), 'loaded': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))\n"
    )
    proc = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"dim": 384, "loaded": []}
