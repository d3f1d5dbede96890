"""Llama-architecture GGUF files with random weights, for loading and memory checks beyond the packaged 135M.

No 0.5-1.5B GGUF comes in a package these machines can install (docs/inference.md lists what was
searched) and nothing may download one, so the CPU engine's larger-model test writes its own: the
layout, tensor names and metadata of a file llama.cpp's ``convert_hf_to_gguf.py`` writes
for a Llama, weights drawn from a seeded normal distribution and quantised with the ``gguf`` package's
numpy quantisers. The text is noise; loading, memory, determinism and speed are what it can show.
With ``tokenizer_from`` the file carries that GGUF's tokenizer metadata (SmolLM2's), so prompts
tokenize and the chat template renders as with a real model.

As a script (the benchmark's input)::

    python -P tests/serving/inference/synthetic_gguf.py OUT.gguf [--qtype Q8_0] [--layers 28] [--hidden 1024]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LlamaShape:
    """A Llama's sizes; the defaults make about 0.47 B parameters with SmolLM2's 49,152-token vocabulary."""

    hidden: int = 1024
    layers: int = 28
    heads: int = 16
    kv_heads: int = 4
    intermediate: int = 4096
    vocab: int = 49152
    context: int = 8192

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def layer_tensors(self) -> dict[str, tuple[int, ...]]:
        kv = self.kv_heads * self.head_dim
        return {
            "attn_norm.weight": (self.hidden,),
            "attn_q.weight": (self.hidden, self.hidden),
            "attn_k.weight": (kv, self.hidden),
            "attn_v.weight": (kv, self.hidden),
            "attn_output.weight": (self.hidden, self.hidden),
            "ffn_norm.weight": (self.hidden,),
            "ffn_gate.weight": (self.intermediate, self.hidden),
            "ffn_up.weight": (self.intermediate, self.hidden),
            "ffn_down.weight": (self.hidden, self.intermediate),
        }

    def tensors(self) -> dict[str, tuple[int, ...]]:
        """GGUF name -> shape in transformers' [out, in] order; the output projection is tied (not stored)."""
        out = {"token_embd.weight": (self.vocab, self.hidden)}
        for n in range(self.layers):
            out.update({f"blk.{n}.{name}": shape for name, shape in self.layer_tensors().items()})
        out["output_norm.weight"] = (self.hidden,)
        return out

    def parameters(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.tensors().values())


def write_llama_gguf(
    path: Path,
    shape: LlamaShape,
    qtype: str = "Q8_0",
    seed: int = 0,
    tokenizer_from: Path | None = None,
    std: float = 0.02,
    rope_scaling: tuple[str, float] | None = None,
    extra_tensors: tuple[str, ...] = (),
) -> Path:
    """Write a tied-embedding Llama GGUF at ``path``: matrices in ``qtype`` (Q8_0, Q4_0, Q4_1, F16, F32),
    norms in F32. ``rope_scaling``: (type, factor) metadata; ``extra_tensors``: F32 vectors of the
    half the head size under these names (a Llama 3 file's ``rope_freqs.weight``, say). The same arguments
    write the same bytes."""
    import gguf

    quant = gguf.GGMLQuantizationType[qtype]
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name(f"synthetic-llama-{shape.parameters() / 1e9:.2f}b-{qtype.lower()}")
    writer.add_block_count(shape.layers)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_feed_forward_length(shape.intermediate)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_freq_base(100000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(shape.vocab)
    writer.add_rope_dimension_count(shape.head_dim)
    if rope_scaling is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType(rope_scaling[0]))
        writer.add_rope_scaling_factor(rope_scaling[1])
    if tokenizer_from is not None:
        _copy_tokenizer(gguf.GGUFReader(tokenizer_from), writer, shape.vocab)
    rng = np.random.default_rng(seed)
    for name, dims in shape.tensors().items():
        if len(dims) == 1:  # RMSNorm weights: around 1, as trained ones are
            writer.add_tensor(
                name, (1.0 + 0.1 * rng.standard_normal(dims, dtype=np.float32)).astype(np.float32)
            )
            continue
        values = rng.standard_normal(dims, dtype=np.float32) * np.float32(std)
        if quant in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            writer.add_tensor(name, gguf.quants.quantize(values, quant))
        else:
            writer.add_tensor(name, gguf.quants.quantize(values, quant), raw_dtype=quant)
        del values
    for name in extra_tensors:
        writer.add_tensor(name, np.ones(shape.head_dim // 2, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _copy_tokenizer(reader: object, writer: object, vocab: int) -> None:
    import gguf

    fields = reader.fields  # type: ignore[attr-defined]
    tokens = fields.get("tokenizer.ggml.tokens")
    if tokens is None or len(tokens.data) != vocab:
        raise ValueError(f"the tokenizer source must have {vocab} tokens")
    for name, field in fields.items():
        if not name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), kind, sub_type=sub)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--qtype", default="Q8_0")
    parser.add_argument("--seed", type=int, default=0)
    for field, default in LlamaShape().__dict__.items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=default)
    args = parser.parse_args()
    shape = LlamaShape(**{f: getattr(args, f) for f in LlamaShape().__dict__})
    from finserve.serving.inference.base_model import gguf_path

    write_llama_gguf(args.out, shape, args.qtype, args.seed, tokenizer_from=gguf_path())
    print(f"{args.out}: {shape.parameters() / 1e6:.0f} M parameters, {args.out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
