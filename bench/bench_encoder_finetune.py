"""Experiment: MiniLM fine-tuned as an intent classifier, alone and averaged with adapter heads and the vote.

Not on the served path (docs/training.md, "On a GPU"): it measures whether a fine-tuned sentence
encoder is worth shipping inside an adapter version. Per seed, the packaged MiniLM is fully
fine-tuned on the training split (mean pooling + linear head, AdamW, label smoothing 0.1, warm-up
then linear decay) and scored on the 2,001 validation rows after every epoch. With ``--mix FILE``
(the ``--probs-out`` of bench_intent_mix: heads and vote on the same rows) it also reports the
equal-weight average of the final encoder with each head and the vote: a rule fixed in advance, so
no weight is tuned on validation. About 7 s per epoch on one H100; about 20 min per epoch on this
2-core CPU, so run it on a GPU. ``--train-layers N`` trains only the top N encoder layers: the
embeddings and the layers below are frozen, so their output is computed once per row and cached
(the CPU-budget variant; 2-3 min per epoch here for N = 2-3).

    python -m bench.bench_encoder_finetune --device cuda --seeds 0 1 2 --mix probs.npz [--out FILE]
    python -m bench.bench_encoder_finetune --train-layers 3 --epochs 3 --mix probs.npz
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, write_result


def _acc(probs: np.ndarray, gold: np.ndarray) -> float:
    return round(float((probs.argmax(axis=1) == gold).mean()), 4)


def finetune(seed: int, args: argparse.Namespace, splits: Any, on_epoch: Any) -> np.ndarray:
    """Fine-tune one encoder; ``on_epoch(epoch, probs, seconds)`` after each epoch; the last probs."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from finserve.serving.retrieval.embedder import default_model_path

    torch.manual_seed(seed)
    rng = random.Random(seed)
    path = str(args.model or default_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    enc = AutoModel.from_pretrained(path, dtype=torch.float32).to(args.device)
    labels = splits.labels
    head = torch.nn.Linear(enc.config.hidden_size, len(labels)).to(args.device)
    train = splits.train[: args.max_train] if args.max_train else splits.train
    texts, y = [t for t, _ in train], torch.tensor([labels.index(c) for _, c in train], device=args.device)
    val = [t for t, _ in splits.validation]

    layers = enc.encoder.layer
    low = len(layers) - (args.train_layers or len(layers))
    for param in [*enc.embeddings.parameters(), *(p for layer in layers[:low] for p in layer.parameters())]:
        param.requires_grad_(low == 0)  # all layers trained: the embeddings too, as a full fine-tune

    def prefix(batch: list[str]) -> tuple[Any, Any]:
        """Hidden states after the frozen layers, and the attention mask."""
        b = tok(batch, padding=True, truncation=True, max_length=64, return_tensors="pt").to(args.device)
        hidden = enc.embeddings(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"])
        for layer in layers[:low]:
            hidden = _out(layer(hidden, attention_mask=_additive(b["attention_mask"])))
        return hidden, b["attention_mask"]

    cache: dict[str, tuple[Any, Any]] = {}
    if low:  # frozen prefix: once per row (trimmed to its own length), not once per epoch
        with torch.no_grad():
            for group in (texts, val):
                for i in range(0, len(group), 256):
                    hidden, mask = prefix(group[i : i + 256])
                    for j, text in enumerate(group[i : i + 256]):
                        n = int(mask[j].sum())
                        cache[text] = (hidden[j, :n], mask[j, :n])

    def pooled(batch: list[str]) -> Any:
        if low:
            width = max(cache[t][0].shape[0] for t in batch)
            hidden = torch.stack([torch.nn.functional.pad(cache[t][0], (0, 0, 0, width - cache[t][0].shape[0]))
                                  for t in batch])
            mask = torch.stack([torch.nn.functional.pad(cache[t][1], (0, width - cache[t][1].shape[0])) for t in batch])
        else:
            hidden, mask = prefix(batch)
        for layer in layers[low:]:
            hidden = _out(layer(hidden, attention_mask=_additive(mask)))
        weights = mask.unsqueeze(-1).float()
        return (hidden * weights).sum(1) / weights.sum(1)

    with torch.no_grad():  # the layer-by-layer path must equal the model's own forward
        b = tok(val[:8], padding=True, return_tensors="pt").to(args.device)
        full = enc(**b).last_hidden_state
        weights = b["attention_mask"].unsqueeze(-1).float()
        gap = float(((full * weights).sum(1) / weights.sum(1) - pooled(val[:8])).abs().max())
        if gap > 1e-4:
            raise SystemExit(f"layer-by-layer forward differs from the model's by {gap}")

    steps = args.epochs * math.ceil(len(texts) / args.batch_size)
    opt = torch.optim.AdamW([{"params": [p for p in enc.parameters() if p.requires_grad], "lr": args.lr},
                             {"params": head.parameters(), "lr": args.head_lr}], weight_decay=0.01)
    warmup = max(1.0, 0.06 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / warmup) * max(0.0, (steps - s) / (steps - warmup)))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    probs = np.zeros((len(val), len(labels)), dtype=np.float32)
    for epoch in range(1, args.epochs + 1):
        start, order = time.perf_counter(), list(range(len(texts)))
        rng.shuffle(order)
        enc.train()
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            pooled_batch = torch.nn.functional.dropout(pooled([texts[j] for j in idx]), 0.1, training=True)
            loss = loss_fn(head(pooled_batch), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        enc.eval()
        with torch.no_grad():
            probs = np.concatenate([torch.softmax(head(pooled(val[i : i + 256])), -1).cpu().numpy()
                                    for i in range(0, len(val), 256)])
        on_epoch(epoch, probs, time.perf_counter() - start)
    return probs


def _additive(mask: Any) -> Any:
    """A padding mask as the additive (batch, 1, 1, keys) float mask a BertLayer takes."""
    import torch

    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def _out(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def run(args: argparse.Namespace) -> dict[str, Any]:
    from finserve.serving.paths import banking77_csv
    from finserve.training.data import load_splits

    splits = load_splits(banking77_csv())
    gold = np.array([splits.labels.index(c) for _, c in splits.validation])
    mix = np.load(args.mix) if args.mix else None
    if mix is not None and not np.array_equal(mix["gold"], gold):
        raise SystemExit(f"{args.mix}: its validation rows differ from this split's")
    out: dict[str, Any] = {"settings": {k: v for k, v in vars(args).items() if k not in {"out", "mix"}}, "seeds": {}}
    for seed in args.seeds:
        epochs: list[dict[str, float]] = []
        final = finetune(seed, args, splits, lambda e, p, s: epochs.append(
            {"epoch": e, "accuracy": _acc(p, gold), "seconds": round(s, 1)}))
        result: dict[str, Any] = {"epochs": epochs, "accuracy": _acc(final, gold)}
        if mix is not None:
            vote = mix["vote"]
            result["with_vote"] = _acc((final + vote) / 2, gold)
            result["equal_mix_with_head_and_vote"] = {
                key.split(":", 1)[1]: _acc((mix[key] + final + vote) / 3, gold)
                for key in mix.files if key.startswith("head:")}
        out["seeds"][str(seed)] = result
        print(seed, result, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--head-lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-layers", type=int, default=None,
                        help="train only the top N encoder layers; the rest and the embeddings are frozen and cached")
    parser.add_argument("--max-train", type=int, default=None, help="first N training rows only (smoke runs)")
    parser.add_argument("--model", type=Path, default=None, help="encoder folder (default: the packaged MiniLM)")
    parser.add_argument("--mix", type=Path, default=None, help="bench_intent_mix --probs-out file")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = {"machine": machine(("torch", "transformers")), **run(args)}
    print(write_result("encoder_finetune", result, args.out))


if __name__ == "__main__":
    main()
