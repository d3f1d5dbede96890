"""PIIGuard.scan() latency on Banking77 messages, with and without PII, and its leak rates.

Messages come from the Banking77 training set (CC BY 4.0). The "with PII" set appends one
realistic detail (card, IBAN, phone, e-mail, SSN, introduced name, UK bank details) to each
message, as customers do. The 40-word sets join Banking77 messages to 40 words (the latency
target's length), the PII ones ending in one detail, obfuscated ones included. Leak rates come
from tests/data/pii_corpus.jsonl (bench/guard_corpus.py) and the Banking77 training queries.
Writes bench/results/guard.json.

    python -m bench.bench_guard [--iterations 400] [--out bench/results/guard.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine, percentiles

RESULTS = Path(__file__).resolve().parent / "results" / "guard.json"
PII_SNIPPETS = (
    "My card number is 4111 1111 1111 1111.",
    "Please send it to GB82 WEST 1234 5698 7654 32.",
    "You can call me on +44 20 7946 0958.",
    "My email is jane.doe@example.co.uk.",
    "My ssn is 536-22-8145.",
    "My name is Maria Garcia.",
    "Sort code 20-00-00, account 31926819.",
    "The pin is 4821 but it is not accepted.",
    "I'm John Smith, reach me at (212) 555-0198.",
)
# Obfuscated details for the 40-word set: the normalisation and conversation work is in the timing.
OBFUSCATED_SNIPPETS = (
    "card 4458.5630.7407.7526 please",
    "my card is four four five eight five six three zero seven four zero seven seven five two six",
    "card ４４５８ ５６３０ ７４０７ ７５２６",
    "My phone is +44 7700 900123.",
    "iban gb82-west-1234-5698-7654-32",
    "mail jane dot doe at mail dot com",
    "name on account Hannah Adeyemi",
)
PACKAGES = ("presidio-analyzer", "presidio-anonymizer", "spacy", "phonenumbers", "tldextract", "pydantic")


def load_messages(n: int, seed: int = 77) -> list[str]:
    from finserve.serving.paths import banking77_csv

    with open(banking77_csv(), encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    return random.Random(seed).sample(texts, n)


def with_pii(messages: list[str], seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"{m} {rng.choice(PII_SNIPPETS)}" for m in messages]


def forty_words(messages: list[str], n: int, seed: int = 40, snippets: tuple[str, ...] = ()) -> list[str]:
    """n messages of exactly 40 words: Banking77 messages joined, the last words one PII detail."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tail = rng.choice(snippets).split() if snippets else []
        words: list[str] = []
        while len(words) < 40 - len(tail):
            words.extend(rng.choice(messages).split())
        out.append(" ".join(words[: 40 - len(tail)] + tail))
    return out


def leak_rates(guard: Any) -> dict[str, Any]:
    from bench.guard_corpus import load_corpus, score
    from finserve.serving.paths import banking77_csv

    corpus = score(guard.scan_many, load_corpus())
    with open(banking77_csv(), encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    altered = sum(r.text != t for t, r in zip(texts, guard.scan_each(texts), strict=True))
    return {
        "corpus_kinds": corpus["kinds"],
        "corpus_formats": corpus["formats"],
        "corpus_leaked_ids": corpus["leaks"],
        "banking77_altered": {
            "texts": len(texts),
            "altered": altered,
            "rate": round(altered / len(texts), 4),
        },
    }


def time_calls(fn: Callable[[str], object], texts: list[str], warmup: int = 20) -> dict[str, Any]:
    """Wall-clock and this thread's CPU time per call. On a shared machine the wall-clock tail
    includes time the scheduler gave to other processes; CPU time does not."""
    for text in texts[:warmup]:
        fn(text)
    wall, cpu = [], []
    for text in texts:
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        fn(text)
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        wall.append((time.perf_counter_ns() - w0) / 1e6)
    return {"wall": percentiles(wall), "cpu": percentiles(cpu)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400, help="scan() calls per message set (>= 200)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--spacy-model",
        default=None,
        help="guard.spacy_model: an installed spaCy pipeline (package name or folder) for NER; "
        "default: patterns only, as served by default",
    )
    args = parser.parse_args(argv)
    if args.iterations < 200:
        parser.error("--iterations must be at least 200")

    info = machine(PACKAGES)
    start = time.perf_counter()
    from finserve.serving.guard import GuardConfig, PIIGuard

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    guard = PIIGuard(GuardConfig(spacy_model=args.spacy_model), hash_key=b"bench-only-key-not-a-secret-0000")
    build_s = time.perf_counter() - start

    clean = load_messages(args.iterations)
    dirty = with_pii(clean)
    found = sum(bool(guard.scan(t).findings) for t in dirty)
    if found != len(dirty):
        raise SystemExit(f"the guard missed PII in {len(dirty) - found} benchmark messages")

    batch = 16

    def scan_each_per_text(texts: list[str]) -> list[float]:
        samples = []
        for i in range(0, len(texts) - batch + 1, batch):
            chunk = texts[i : i + batch]
            t0 = time.perf_counter_ns()
            guard.scan_each(chunk)  # independent messages; scan_many would read them as one conversation
            samples.append((time.perf_counter_ns() - t0) / 1e6 / batch)
        return samples

    result = {
        "benchmark": "guard.scan",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "config": f"GuardConfig() defaults: {len(GuardConfig().entities)} entity types, replace action, "
        + (f"spaCy NER from {args.spacy_model}" if args.spacy_model else "no spaCy model"),
        "import_s": round(import_s, 2),
        "build_s": round(build_s, 2),
        "mean_words_per_message": {
            "without_pii": round(statistics.fmean(len(t.split()) for t in clean), 1),
            "with_pii": round(statistics.fmean(len(t.split()) for t in dirty), 1),
        },
        "scan_without_pii": time_calls(guard.scan, clean),
        "scan_with_pii": time_calls(guard.scan, dirty),
        "scan_each_16_per_text_without_pii": percentiles(scan_each_per_text(clean)),
        "scan_each_16_per_text_with_pii": percentiles(scan_each_per_text(dirty)),
        "scan_40_words_without_pii": time_calls(guard.scan, forty_words(clean, args.iterations)),
        "scan_40_words_with_pii": time_calls(
            guard.scan, forty_words(clean, args.iterations, snippets=PII_SNIPPETS + OBFUSCATED_SNIPPETS)
        ),
        "leaks": leak_rates(guard),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
