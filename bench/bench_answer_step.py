"""One answer-stage training step (training_jobs/answer_trainer.py), float32 against bfloat16 autocast.

The answer stage trains the generator's LoRA on layers 18-29 from cached layer-17 states: each step is
the forward of the upper layers, the LM head at the target positions and the backward. This times that
step on the real base model, same batch (``--batch`` examples of about 330-350 prompt tokens and 60
target tokens, what serving's prompts and the curated answers measure), the two precisions
interleaved so both see the same machine load, and reports the ratio and the loss each computes.

    python -m bench.bench_answer_step [--batch 4] [--repeats 4] [--rounds 2] [--out FILE]

``precision: auto`` takes bfloat16 where the CPU multiplies it natively (avx512_bf16 or amx_bf16 in
/proc/cpuinfo); the flags are in the result.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import machine, write_result


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from finserve.serving.paths import data_dir
    from finserve.training.answer_trainer import Example, _loss
    from finserve.training.config import TrainConfig
    from finserve.training.model import cpu_has_bf16, load_generator
    from finserve.training.trainer import cache_states

    config = TrainConfig.from_file(Path(__file__).resolve().parents[1] / "training_jobs/configs/default.yaml")
    base = Path(args.base) if args.base else data_dir() / "models" / "smollm2-135m-instruct"
    loaded = load_generator(config, base)
    model, first = loaded.model, config.answers.first_layer
    gen = torch.Generator().manual_seed(0)
    examples = [
        Example(
            prompt=torch.randint(100, 40000, (330 + 7 * i,), generator=gen).tolist(),
            target=torch.randint(100, 40000, (60,), generator=gen).tolist(),
        )
        for i in range(args.batch)
    ]
    states = cache_states(
        model, [e.prompt + e.target for e in examples], first, 0, "cpu", batch_size=args.batch
    )
    params = [p for p in model.parameters() if p.requires_grad]
    seconds: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    losses: dict[str, float] = {}
    for _ in range(args.rounds):
        for precision in seconds:
            ctx = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if precision == "bfloat16"
                else contextlib.nullcontext()
            )
            for i in range(args.repeats + 1):  # the first of each run warms up
                t0 = time.perf_counter()
                with ctx:
                    loss, n = _loss(model, states, examples, first)
                (loss / n).backward()
                for p in params:
                    p.grad = None
                if i:
                    seconds[precision].append(time.perf_counter() - t0)
                losses[precision] = round(loss.item() / n, 4)
    median = {k: round(statistics.median(v), 3) for k, v in seconds.items()}
    return {
        "machine": machine(("torch", "transformers", "peft")),
        "cpu_native_bf16": cpu_has_bf16(),
        "batch": args.batch,
        "prompt_tokens": [len(e.prompt) for e in examples],
        "target_tokens": len(examples[0].target),
        "step_seconds_median": median,
        "step_seconds": {k: [round(x, 3) for x in v] for k, v in seconds.items()},
        "bf16_speedup": round(median["float32"] / median["bfloat16"], 2),
        "loss_per_token": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--base", help="Converted base model folder (default: under the data dir).")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args)
    print(write_result("answer_step", result, args.out))
    print(
        {k: result[k] for k in ("step_seconds_median", "bf16_speedup", "loss_per_token", "cpu_native_bf16")}
    )


if __name__ == "__main__":
    main()
