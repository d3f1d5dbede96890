"""The prefix cache's trie and LRU on small tensors, and on the real SmolLM2 weights:
a prefill that reuses cached prefixes gives the logits and greedy tokens of one that computes them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finserve.serving.inference.adapter_files import adapter_folder
from finserve.serving.inference.chat import render_prompt
from finserve.serving.inference.config import CPUOptions
from finserve.serving.inference.model_runner import ModelRunner
from finserve.serving.inference.prefix_cache import PrefixCache, stack
from finserve.serving.inference.types import ChatMessage

BLOCK = 4
LAYERS, HEADS, DIM = 2, 1, 2
BLOCK_BYTES = 2 * LAYERS * HEADS * BLOCK * DIM * 4  # keys + values, float32


def kv(tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys/values whose every entry is the token id (so a block shows which tokens it came from)."""
    t = torch.tensor(tokens, dtype=torch.float32)[None, None, :, None].expand(LAYERS, HEADS, len(tokens), DIM)
    return t.clone(), -t.clone()


def fill(cache: PrefixCache, tokens: list[int], namespace: str = "") -> None:
    chain = cache.match(namespace, tokens, len(tokens) - 1)
    done = len(chain) * cache.block
    keys, values = kv(tokens[done:])
    cache.insert(namespace, tokens, chain, keys, values)


def test_match_is_an_exact_prefix_in_whole_blocks() -> None:
    cache = PrefixCache(1 << 20, BLOCK)
    fill(cache, list(range(10)))  # blocks 0-3 and 4-7; 8-9 is not a full block
    assert len(cache) == 2
    chain = cache.match("", list(range(10)), limit=9)
    assert [b.keys[0, 0, 0, 0].item() for b in chain] == [0, 4]
    keys, values = stack(chain)
    assert keys[0, 0, :, 0].tolist() == list(range(8)) and values[0, 0, :, 0].tolist() == [
        -t for t in range(8)
    ]
    # A different token in the second block: only the first block matches.
    assert len(cache.match("", [0, 1, 2, 3, 4, 5, 99, 7, 8], limit=8)) == 1
    # The same second block after another first block is another prefix: no match.
    assert cache.match("", [9, 1, 2, 3, 4, 5, 6, 7, 8], limit=8) == []
    # At least one token is left to compute: a prompt of exactly two blocks reuses one.
    assert len(cache.match("", list(range(8)), limit=7)) == 1
    assert cache.stats.hit_tokens == 8 + 4 + 4


def test_namespaces_do_not_share_blocks_and_drop_forgets_one() -> None:
    cache = PrefixCache(1 << 20, BLOCK)
    fill(cache, list(range(9)), "a_tiny")
    assert cache.match("", list(range(9)), 8) == []  # the base model's rows never see an adapter's keys
    fill(cache, list(range(9)), "")
    assert len(cache) == 4
    cache.drop("a_tiny")
    assert cache.match("a_tiny", list(range(9)), 8) == [] and len(cache.match("", list(range(9)), 8)) == 2
    assert cache.nbytes == 2 * BLOCK_BYTES


def test_lru_keeps_the_shared_first_block_and_evicts_whole_subtrees() -> None:
    cache = PrefixCache(4 * BLOCK_BYTES, BLOCK)
    system = [1, 2, 3, 4]
    fill(cache, system + [10, 11, 12, 13, 0])
    fill(cache, system + [20, 21, 22, 23, 0])
    fill(cache, system + [30, 31, 32, 33, 0])
    assert len(cache) == 4 and cache.nbytes == 4 * BLOCK_BYTES
    fill(cache, system + [40, 41, 42, 43, 0])  # over budget: the least recently used leaf goes, not the root
    assert len(cache) == 4 and cache.nbytes <= cache.budget_bytes
    assert len(cache.match("", system + [10, 11, 12, 13, 0], 8)) == 1
    assert len(cache.match("", system + [40, 41, 42, 43, 0], 8)) == 2
    # Evicting a block takes its descendants: nothing is left unreachable.
    cache.drop("")
    fill(cache, list(range(13)))  # a chain of three blocks
    cache._remove(cache.match("", list(range(13)), 12)[0].id)  # noqa: SLF001
    assert len(cache) == 0 and cache.nbytes == 0


def test_blocks_live_in_reused_slots_so_memory_stays_at_the_cap() -> None:
    cache = PrefixCache(4 * BLOCK_BYTES, BLOCK)
    for first in range(0, 400, 4):  # a hundred distinct prompts through a cache of four blocks
        fill(cache, [first, first + 1, first + 2, first + 3, 0])
        assert cache.nbytes <= cache.budget_bytes
    # Freed slots were taken again: the cache never held more than its cap in slots (four of them).
    assert cache.allocated_bytes == 4 * BLOCK_BYTES
    # Reused slots hold the new block's keys and values, not an evicted one's.
    chain = cache.match("", [396, 397, 398, 399, 0], 4)
    assert [int(t) for t in chain[0].keys[0, 0, :, 0]] == [396, 397, 398, 399]
    assert [int(t) for t in chain[0].values[1, 0, :, 1]] == [-396, -397, -398, -399]
    assert chain[0].slot is not None
    # A block of another shape (never from one model) gets its own tensors and leaves the slots alone.
    odd = torch.zeros(LAYERS + 1, HEADS, BLOCK + 1, DIM)
    cache.insert("odd", list(range(50, 55)), [], odd, odd)
    assert cache.match("odd", list(range(50, 55)), 4)[0].slot is None
    assert cache.allocated_bytes == 4 * BLOCK_BYTES
    cache.clear()
    assert cache.allocated_bytes == 0


def test_insert_under_an_evicted_parent_is_skipped() -> None:
    cache = PrefixCache(1 << 20, BLOCK)
    fill(cache, list(range(5)))
    chain = cache.match("", list(range(9)), 8)
    cache.drop("")
    keys, values = kv(list(range(4, 9)))
    assert cache.insert("", list(range(9)), chain, keys, values) == 0 and len(cache) == 0


# ---- on the real model ----

SYSTEM = (
    "You are the customer assistant of a bank. Answer briefly, using only the knowledge below.\n\n"
    "Knowledge:\n[1] To reset your PIN, open the app, choose Card, then Reset PIN.\n"
    "[2] New cards arrive within five working days."
)
QUESTIONS = [
    "How do I reset my PIN?",
    "When will my new card arrive?",
    "What is an IBAN?",
    "Can I get a refund for a card payment?",
]


def prompts_for(tokenizer, questions: list[str], system: str = SYSTEM) -> list[list[int]]:
    return [
        render_prompt(
            tokenizer, [ChatMessage(role="system", content=system), ChatMessage(role="user", content=q)]
        )
        for q in questions
    ]


def greedy(runner: ModelRunner, prompts: list[list[int]], adapters: list[str | None], steps: int = 12):
    """(first-step logits, greedy tokens [batch, steps], cached tokens per row)."""
    start = runner.prefill(prompts, adapters)
    logits, mask, positions = start.logits, start.attention_mask, start.position_ids
    first, tokens = logits, []
    for _ in range(steps):
        token = logits.argmax(-1)
        tokens.append(token)
        mask = torch.cat([mask, torch.ones((len(prompts), 1), dtype=mask.dtype)], dim=1)
        positions = positions[:, -1:] + 1
        logits = runner.forward(token[:, None], mask, positions, start.cache, adapters)
    return first, torch.stack(tokens, 1), start.cached_tokens


@pytest.fixture(scope="module")
def runners(model_dir: Path) -> tuple[ModelRunner, ModelRunner]:
    """The same int8 lean runner with and without a prefix cache."""
    plain = ModelRunner(model_dir, CPUOptions(prefix_cache_mb=0))
    cached = ModelRunner(model_dir, CPUOptions(prefix_cache_mb=64))
    plain.load()
    cached.load()
    if cached.forward_path != "lean":
        pytest.skip("the lean forward cannot run here")
    return plain, cached


def test_prefill_from_cached_prefixes_matches_computing_them(runners) -> None:
    plain, cached = runners
    assert plain.prefix_cache is None and cached.prefix_cache is not None
    cached.prefix_cache.clear()
    prompts = prompts_for(cached.tokenizer, QUESTIONS)
    other = prompts_for(cached.tokenizer, ["Is my money safe?"], system="You are a helpful assistant.")
    _, _, cold = greedy(cached, prompts[:1], [None], steps=1)  # fills the cache with the first prompt
    assert cold == [0]
    batch = prompts[1:] + other  # three rows sharing the system turn, one row with nothing cached
    want_logits, want_tokens, none = greedy(plain, batch, [None] * 4)
    got_logits, got_tokens, hits = greedy(cached, batch, [None] * 4)
    assert none == [0, 0, 0, 0]
    shared = len(cached.tokenizer(SYSTEM)["input_ids"])  # the system turn's text, template aside
    assert hits[3] == 0 and all(h > shared - cached.prefix_cache.block for h in hits[:3]), (hits, shared)
    assert all(h % cached.prefix_cache.block == 0 for h in hits)
    assert torch.allclose(got_logits, want_logits, atol=1e-3, rtol=1e-4)
    assert torch.equal(got_tokens, want_tokens)
    # The same prompt again: everything but its last block comes from the cache, same output.
    again_logits, again_tokens, again = greedy(cached, batch[:1], [None])
    assert again[0] >= len(batch[0]) - cached.prefix_cache.block
    assert torch.allclose(again_logits, want_logits[:1], atol=1e-3, rtol=1e-4)
    assert torch.equal(again_tokens, want_tokens[:1])


def test_adapter_rows_reuse_only_their_adapters_prefixes(runners, lora_registry) -> None:
    plain, cached = runners
    cached.prefix_cache.clear()
    _, folder = lora_registry.fetch("tiny@1.0.0")
    for runner in runners:
        runner.load_adapter("tiny", adapter_folder(folder))
    try:
        prompts = prompts_for(cached.tokenizer, QUESTIONS)
        greedy(cached, prompts[:1], [None], steps=1)  # base-model blocks only
        adapters = ["tiny", "tiny", None]
        want_logits, want_tokens, _ = greedy(plain, prompts[1:], adapters)
        assert not torch.allclose(
            want_logits[0], greedy(plain, prompts[1:2], [None], steps=1)[0][0], atol=1e-2
        )
        for round_ in range(2):  # the adapter's rows miss, then hit their own blocks
            got_logits, got_tokens, hits = greedy(cached, prompts[1:], adapters)
            # The first adapter row finds nothing of its own at first (a later row of the batch may
            # find what an earlier prefill group cached); the base row finds the base blocks.
            assert (hits[0] > 0, hits[2] > 0) == (bool(round_), True) and (hits[1] > 0 or not round_), hits
            assert torch.allclose(got_logits, want_logits, atol=1e-3, rtol=1e-4)
            assert torch.equal(got_tokens, want_tokens)
        # Unloading (or reloading under the same name) drops the adapter's blocks, not the base model's.
        cached.unload_adapter("tiny")
        assert cached.prefix_cache.match("tiny", prompts[1], len(prompts[1]) - 1) == []
        assert cached.prefix_cache.match("", prompts[1], len(prompts[1]) - 1) != []
    finally:
        for runner in runners:
            runner.unload_adapter("tiny")
