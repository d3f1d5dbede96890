"""Next-token choice: greedy is argmax, seeded sampling repeats, top-p keeps the smallest nucleus."""

from __future__ import annotations

import torch

from finserve.serving.inference.sampling import SamplingSpec, next_tokens, top_p_filter


def test_greedy_rows_take_the_argmax() -> None:
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 1.0, 0.0]])
    specs = [SamplingSpec(), SamplingSpec()]
    assert next_tokens(logits, specs, [s.generator() for s in specs]).tolist() == [1, 0]


def test_seeded_sampling_is_reproducible_and_seed_dependent() -> None:
    logits = torch.zeros(1, 1000)  # uniform: every draw is a real random choice

    def draws(seed: int) -> list[int]:
        spec = SamplingSpec(temperature=1.0, seed=seed)
        gen = spec.generator()
        return [int(next_tokens(logits, [spec], [gen])[0]) for _ in range(8)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_top_p_keeps_smallest_set_reaching_the_mass() -> None:
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    kept = top_p_filter(probs, 0.7)
    assert kept.nonzero().flatten().tolist() == [1, 2]  # 0.5 + 0.3 reaches 0.7; 0.15 is not needed
    assert top_p_filter(probs, 0.1).nonzero().flatten().tolist() == [1]  # the top token always stays
    assert torch.equal(top_p_filter(probs, 1.0), probs)


def test_sampling_with_tiny_top_p_equals_greedy() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0, 1.5]])
    spec = SamplingSpec(temperature=1.5, top_p=0.01, seed=1)
    assert next_tokens(logits, [spec], [spec.generator()]).tolist() == [1]
