"""The sentence-encoder part of an adapter version, alone and averaged with adapter heads and the vote.

Per seed, `finserve.training.encoder_trainer.fit_encoder` (the training job's own loop: the top
``--train-layers`` MiniLM layers trained, embeddings and lower layers frozen and cached, batches of
similar length) fine-tunes the packaged MiniLM on the training split and scores the 2,001
validation rows after every epoch. With ``--mix FILE`` (the ``--probs-out`` of bench_intent_mix:
heads and vote on the same rows) it also reports the equal-weight average of the final encoder
with each head and the vote: a rule fixed in advance, so no weight is tuned on validation.

    python -m bench.bench_encoder_finetune --epochs 4 --mix probs.npz [--seeds 0 1] [--out FILE]

With several seeds and ``--mix`` it also scores every pair of encoders averaged into one opinion.

The GPU figures of docs/training.md ("On a GPU") came from this script's earlier loop, which also
trained the embeddings (`git show d2329b0:bench/bench_encoder_finetune.py`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, write_result


def _acc(probs: np.ndarray, gold: np.ndarray) -> float:
    return round(float((probs.argmax(axis=1) == gold).mean()), 4)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from finserve.serving.paths import banking77_csv
    from finserve.serving.retrieval.embedder import default_model_path
    from finserve.training.config import EncoderSettings
    from finserve.training.data import load_splits
    from finserve.training.encoder_trainer import fit_encoder

    splits = load_splits(banking77_csv())
    gold = np.array([splits.labels.index(c) for _, c in splits.validation])
    mix = np.load(args.mix) if args.mix else None
    if mix is not None and not np.array_equal(mix["gold"], gold):
        raise SystemExit(f"{args.mix}: its validation rows differ from this split's")
    settings = EncoderSettings(
        enabled=True,
        train_layers=args.train_layers,
        epochs=args.epochs,
        lr=args.lr,
        head_lr=args.head_lr,
        batch_size=args.batch_size,
    )
    out: dict[str, Any] = {"settings": settings.model_dump(), "seeds": {}}
    saved: dict[str, np.ndarray] = {"gold": gold}
    train = splits.train[: args.max_train] if args.max_train else splits.train
    for seed in args.seeds:
        started = time.perf_counter()
        trained = fit_encoder(
            settings,
            args.model or default_model_path(),
            train,
            splits.validation,
            splits.labels,
            seed=seed,
            progress=False,
        )
        final = trained.validation
        saved[f"encoder:{seed}"] = final
        result: dict[str, Any] = {
            "epochs": [e.model_dump() for e in trained.epochs],
            "accuracy": _acc(final, gold),
            "cache_seconds": round(trained.cache_seconds, 1),
            "minutes": round((time.perf_counter() - started) / 60, 2),
        }
        if mix is not None:
            vote = mix["vote"]
            result["with_vote"] = _acc((final + vote) / 2, gold)
            result["equal_mix_with_head_and_vote"] = {
                key.split(":", 1)[1]: _acc((mix[key] + final + vote) / 3, gold)
                for key in mix.files
                if key.startswith("head:")
            }
        out["seeds"][str(seed)] = result
        print(seed, result, flush=True)
    if len(args.seeds) > 1 and mix is not None:
        # Two encoders averaged into one opinion (a candidate recipe), in the same equal mix.
        pairs: dict[str, dict[str, float]] = {}
        for i, a in enumerate(args.seeds):
            for b in args.seeds[i + 1 :]:
                pair = (saved[f"encoder:{a}"] + saved[f"encoder:{b}"]) / 2
                pairs[f"{a}+{b}"] = {
                    "accuracy": _acc(pair, gold),
                    **{
                        key.split(":", 1)[1]: _acc((mix[key] + pair + mix["vote"]) / 3, gold)
                        for key in mix.files
                        if key.startswith("head:")
                    },
                }
        out["two_encoders_averaged"] = pairs
        print("two encoders averaged", pairs, flush=True)
    if args.probs_out:
        np.savez_compressed(args.probs_out, **saved)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[77])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--head-lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--train-layers", type=int, default=6, help="top encoder layers trained; the rest are frozen"
    )
    parser.add_argument("--max-train", type=int, default=None, help="first N training rows only (smoke runs)")
    parser.add_argument(
        "--model", type=Path, default=None, help="encoder folder (default: the packaged MiniLM)"
    )
    parser.add_argument("--mix", type=Path, default=None, help="bench_intent_mix --probs-out file")
    parser.add_argument(
        "--probs-out", type=Path, default=None, help="save each seed's validation probabilities (npz)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = {"machine": machine(("torch", "transformers")), **run(args)}
    print(write_result("encoder_finetune", result, args.out))


if __name__ == "__main__":
    main()
