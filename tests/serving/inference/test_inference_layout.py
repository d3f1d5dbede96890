"""Left padding, the layout of partly cached prompts, and which rows prefill together."""

from __future__ import annotations

import pytest

from finserve.serving.inference.layout import left_pad, plan_forwards, split_layout


def test_left_pad_right_aligns_prompts_and_counts_positions_over_real_tokens() -> None:
    ids, mask, positions = left_pad([[1, 2, 3, 4, 5, 6], [7, 8, 9], [1, 2, 3, 4, 5]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 4, 5, 6], [0, 0, 0, 7, 8, 9], [0, 1, 2, 3, 4, 5]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1]]
    assert positions.tolist() == [[0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 1, 2], [0, 0, 1, 2, 3, 4]]


def test_split_layout_right_aligns_cached_and_computed_tokens() -> None:
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8, 9], [1, 2, 3, 4, 5]]
    layout = split_layout(prompts, [4, 0, 2], pad_id=0)
    assert layout.cached_columns == 4
    assert layout.input_ids.tolist() == [[0, 5, 6], [7, 8, 9], [3, 4, 5]]
    assert layout.attention_mask.tolist() == [
        [1, 1, 1, 1, 0, 1, 1],
        [0, 0, 0, 0, 1, 1, 1],
        [0, 0, 1, 1, 1, 1, 1],
    ]
    # Positions count real tokens: the computed part continues where the cached part stopped.
    assert layout.position_ids[:, 4:].tolist() == [[3, 4, 5], [0, 1, 2], [2, 3, 4]]
    assert [layout.computed_start(len(p), c) for p, c in zip(prompts, [4, 0, 2], strict=True)] == [5, 4, 4]
    # Nothing cached: the plain left padding.
    plain = split_layout(prompts, [0, 0, 0], 0)
    assert [t.tolist() for t in (plain.input_ids, plain.attention_mask, plain.position_ids)] == [
        t.tolist() for t in left_pad(prompts, 0)
    ]
    with pytest.raises(ValueError, match="one must be computed"):
        split_layout([[1, 2]], [2], 0)


def test_plan_forwards_groups_rows_of_similar_length() -> None:
    # Similar lengths: one padded forward is cheapest.
    assert plan_forwards([100, 98, 97], overhead=24) == [[2, 1, 0]]
    # One long row among short ones runs alone instead of padding the others up to it.
    assert plan_forwards([20, 260, 24, 18], overhead=24) == [[3, 0, 2], [1]]
    # Without a per-forward cost every row runs alone; with a large one, all together.
    assert plan_forwards([5, 50, 120], overhead=0) == [[0], [1], [2]]
    assert plan_forwards([5, 50, 120], overhead=1000) == [[0, 1, 2]]
    groups = plan_forwards([70, 260, 30, 255, 120, 64, 250, 90], overhead=24)
    assert sorted(r for g in groups for r in g) == list(range(8))


def test_plan_forwards_keeps_each_forward_under_the_token_cap() -> None:
    # Eight RAG prompts of ~300 tokens: forwards of 1,500 positions and more without a cap, of three rows at most
    # under 1,024 (each forward's temporaries bounded), every row in exactly one group.
    remaining = [300, 310, 290, 305, 295, 300, 315, 299]
    assert max(len(g) for g in plan_forwards(remaining, overhead=24)) >= 5
    groups = plan_forwards(remaining, overhead=24, max_tokens=1024)
    assert sorted(r for g in groups for r in g) == list(range(8))
    assert all(len(g) * max(remaining[r] for r in g) <= 1024 for g in groups)
    assert len(groups) == 3
    # A row longer than the cap still runs, alone.
    assert plan_forwards([2000, 10, 12], overhead=24, max_tokens=1024) == [[1, 2], [0]]
