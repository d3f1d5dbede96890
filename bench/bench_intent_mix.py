"""Why the served intent lands where it does: each adapter's head, the retrieval vote, and their mix.

For every adapter named, the head's probabilities on the 2,001 validation rows through the serving
`IntentClassifier` (the same forward the pipeline runs; for a version with a fine-tuned encoder,
the head already blended with it), the retrieval vote over the training split
(MiniLM, exact top-k, as training scores it), and then: head and vote accuracy, the mix at the
adapter's own weight and across weights, how often head and vote are both wrong (no mix can fix
those rows), and how often they disagree. A frozen reference rides along: logistic regression on
the MiniLM vectors, alone and in the best three-way mix with the first adapter's head and the vote
(weights picked on validation itself, so an upper bound, not a servable number).

    python -m bench.bench_intent_mix --adapters banking77@1.1.0 banking77@1.3.0 [--out FILE]

Writes bench/results/intent_mix.json. Needs the adapters in the registry (`make adapters`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, write_result

WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0)


def _acc(probs: np.ndarray, gold: np.ndarray) -> float:
    return round(float((probs.argmax(axis=1) == gold).mean()), 4)


def run(adapters: list[str], k: int, temperature: float, probs_out: Path | None = None) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    from finserve.contracts import AdapterRef, AdapterRegistry
    from finserve.serving.intent import IntentConfig
    from finserve.serving.intent.head import load_head
    from finserve.serving.paths import banking77_csv, registry_root
    from finserve.serving.wiring import build_intent_classifier
    from finserve.training.data import load_splits
    from finserve.training.votes import NeighbourIndex, dense_votes

    splits = load_splits(banking77_csv())
    labels = splits.labels
    gold = np.array([labels.index(c) for _, c in splits.validation])
    texts = [t for t, _ in splits.validation]
    index = NeighbourIndex(splits.index_rows)
    val_vectors = index.embed(texts)
    vote = dense_votes(index.votes(None, k, temperature, vectors=val_vectors), labels)
    registry = AdapterRegistry(registry_root(None))
    classifier = build_intent_classifier(IntentConfig(device="cpu"), registry)
    out: dict[str, Any] = {
        "vote": {"k": k, "temperature": temperature, "accuracy": _acc(vote, gold)},
        "adapters": {},
    }
    heads: list[np.ndarray] = []
    for name in adapters:
        ref = AdapterRef.parse(name)
        if classifier.labels(ref) != labels:
            raise SystemExit(f"{ref}: its labels differ from the split's")
        head = np.concatenate(
            [
                np.asarray(classifier.probabilities(ref, texts[i : i + 100]), dtype=np.float32)
                for i in range(0, len(texts), 100)
            ]
        )
        heads.append(head)
        weight = load_head(registry.fetch(ref)[1])[0].retrieval_weight  # the weight serving mixes with
        right_head, right_vote = head.argmax(1) == gold, vote.argmax(1) == gold
        served = (1 - weight) * head + weight * vote
        out["adapters"][name] = {
            "head_accuracy": _acc(head, gold),
            "served_weight": weight,
            "served_accuracy": _acc(served, gold),
            "sweep": {f"{w:.1f}": _acc((1 - w) * head + w * vote, gold) for w in WEIGHTS},
            "both_wrong": round(float((~right_head & ~right_vote).mean()), 4),
            "disagree": round(float((right_head != right_vote).mean()), 4),
            "gold_in_served_top2": round(
                float(np.mean([g in np.argsort(-p)[:2] for g, p in zip(gold, served, strict=True)])), 4
            ),
        }
    if probs_out is not None:  # per-row probabilities, for mixes this script does not try
        np.savez_compressed(
            probs_out,
            gold=gold,
            vote=vote,
            labels=np.array(labels),
            **{f"head:{name}": head for name, head in zip(adapters, heads, strict=True)},
        )
    train_vectors = index.vectors_of([t for t, _ in splits.train])
    train_gold = np.array([labels.index(c) for _, c in splits.train])
    minilm = LogisticRegression(C=30, max_iter=3000).fit(train_vectors, train_gold).predict_proba(val_vectors)
    grid = [(a, b) for a in np.arange(0, 1.01, 0.1) for b in np.arange(0, 1.01 - a, 0.1)]
    best = max(grid, key=lambda ab: _acc(ab[0] * heads[0] + ab[1] * minilm + (1 - sum(ab)) * vote, gold))
    out["frozen_minilm_lr"] = {
        "accuracy": _acc(minilm, gold),
        "best_three_way_on_validation": {
            "with": adapters[0],
            "head": round(best[0], 1),
            "minilm_lr": round(best[1], 1),
            "accuracy": _acc(best[0] * heads[0] + best[1] * minilm + (1 - sum(best)) * vote, gold),
        },
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--adapters", nargs="+", required=True, help="NAME@VERSION, the first also in the 3-way mix"
    )
    parser.add_argument(
        "--k", type=int, default=10, help="neighbours in the vote (serving: retrieval.example_k)"
    )
    parser.add_argument("--temperature", type=float, default=0.05, help="vote temperature")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--probs-out",
        type=Path,
        default=None,
        help="also write the validation rows' head and vote probabilities here (.npz)",
    )
    args = parser.parse_args()
    result = {
        "machine": machine(("torch", "transformers", "peft", "scikit-learn")),
        **run(args.adapters, args.k, args.temperature, args.probs_out),
    }
    path = write_result("intent_mix", result, Path(args.out) if args.out else None)
    print(path)


if __name__ == "__main__":
    main()
