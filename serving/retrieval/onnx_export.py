"""One-time export of a sentence-transformers model to ONNX, verified against the original.

Only the export needs torch and the ``onnx`` package; serving the exported file needs onnxruntime and the
tokenizer. The graph covers the transformer, mean pooling and L2 normalisation.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Largest difference from sentence-transformers' own output accepted for an export (observed: about 1e-7).
MAX_EXPORT_ERROR = 1e-4
_PROBES = ["How do I activate my new card?", "money", "Why was I charged a fee on a transfer to <IBAN_CODE>?"]


def export_onnx(model_path: Path, out_path: Path) -> Path:
    """Write ``out_path`` (atomically) and check it reproduces the model's embeddings; return it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    st_model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True).eval()
    transformer = st_model[0].auto_model

    class _MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            tokens = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    tokenizer = st_model[0].tokenizer
    sample = tokenizer(_PROBES[:2], return_tensors="pt", padding=True)
    args = tuple(sample[name] for name in INPUT_NAMES)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        # Tracing warns about Python branches on shapes; the probe check below is what proves the graph.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The TorchScript exporter (dynamo=False) needs only the onnx package, not onnxscript.
            torch.onnx.export(
                _MeanPooled().eval(),
                args,
                tmp_name,
                input_names=list(INPUT_NAMES),
                output_names=["embedding"],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES},
                opset_version=17,
                dynamo=False,
            )
        expected = st_model.encode(_PROBES, normalize_embeddings=True, convert_to_numpy=True)
        got = _run(tmp_name, tokenizer, _PROBES)
        error = float(np.abs(expected - got).max())
        if error > MAX_EXPORT_ERROR:
            raise RuntimeError(
                f"ONNX export of {model_path} differs from the model by {error:.2e}: "
                "its pipeline is not transformer + mean pooling; use the torch backend"
            )
        os.replace(tmp_name, out_path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return out_path


def _run(onnx_path: str, tokenizer, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    encoded = tokenizer(texts, return_tensors="np", padding=True)
    return session.run(None, {name: encoded[name].astype(np.int64) for name in INPUT_NAMES})[0]
