"""What a second adapter version's fine-tuned sentence encoder adds to the Generator replica (a canary loads one
beside the stable version): sharing the base encoder's frozen layers and tokenizer against a whole copy per version
(as before session 15), each in a fresh process.

    python -m bench.bench_encoder_sharing [--adapter banking77@2.1.0] [--out bench/results/encoder_sharing.json]

The same version is loaded twice (two versions of one base differ only in their trained layers and head, which
both modes copy); each load answers two questions so its weights are read, not only mapped. VmRSS from /proc.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import machine, write_result

CHILD = """
import json, re, sys
import torch
from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.intent import sentence_encoder as se
from finserve.serving.paths import registry_root
from finserve.serving.retrieval.embedder import default_model_path
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
torch.set_num_threads(1)
_, folder = AdapterRegistry(registry_root()).fetch(AdapterRef.parse(sys.argv[1]))
questions = ["How do I reset my card PIN?", "Where is my new card?"]
before = rss()
_, one = se.load_encoder(folder, default_model_path(), 77)
one.probabilities(questions)
first = rss()
if sys.argv[2] == "copy":  # what every version loaded before: its own base weights and tokenizer
    se.shared_base.cache_clear()
    se.shared_tokenizer.cache_clear()
_, two = se.load_encoder(folder, default_model_path(), 77)
two.probabilities(questions)
second = rss()
print(json.dumps({"first_version_mb": round(first - before, 1), "second_version_mb": round(second - first, 1)}))
"""


def one(adapter: str, mode: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, adapter, mode], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", default="banking77@2.1.0")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = {mode: one(args.adapter, mode) for mode in ("shared", "copy")}
    print(json.dumps(rows, indent=2))
    write_result(
        "encoder_sharing",
        {"machine": machine(("torch", "tokenizers")), "adapter": args.adapter, "rows": rows},
        args.out,
    )


if __name__ == "__main__":
    main()
