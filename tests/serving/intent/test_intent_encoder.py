"""The early-exit encoder: resuming from cached states equals one full forward; padding is inert."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finserve.serving.intent import encoder

pytestmark = pytest.mark.slow
TEXTS = [
    "I am still waiting on my card?",
    "exchange rate",
    "Why did my transfer fail when I sent money abroad?",
]


@pytest.fixture(scope="module")
def model_and_tokenizer(base_model_dir: Path):  # noqa: ANN201
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base_model_dir), num_hidden_layers=6).eval()
    return model, AutoTokenizer.from_pretrained(str(base_model_dir))


def test_cached_prefix_then_upper_layers_equals_full_forward(model_and_tokenizer) -> None:  # noqa: ANN001
    model, tok = model_and_tokenizer
    ids, mask = encoder.pad(encoder.tokenize(tok, TEXTS, 32), tok.pad_token_id)
    with torch.no_grad():
        full = encoder.encode(model, ids, mask, exit_layer=6, pooling="mean_last")
        prefix = encoder.run_layers(model, encoder.embed(model, ids), 0, 4)
        resumed = encoder.finish(model, encoder.run_layers(model, prefix, 4, 6), mask, "mean_last")
    assert full.shape == (3, 2 * 576)
    assert torch.allclose(full, resumed, atol=1e-5)


def test_exit_layer_matches_the_hf_hidden_state_of_that_layer(model_and_tokenizer) -> None:  # noqa: ANN001
    """Our layer loop is the model's own: hidden_states[k] of HF's forward is our state after k layers."""
    model, tok = model_and_tokenizer
    ids = torch.tensor([encoder.tokenize(tok, TEXTS[:1], 32)[0]])
    with torch.no_grad():
        ours = encoder.run_layers(model, encoder.embed(model, ids), 0, 3)
        theirs = model.model(input_ids=ids, output_hidden_states=True).hidden_states[3]
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "last", "mean_last"])
def test_right_padding_does_not_change_a_query_vector(model_and_tokenizer, pooling: str) -> None:  # noqa: ANN001
    model, tok = model_and_tokenizer
    rows = encoder.tokenize(tok, TEXTS, 32)
    with torch.no_grad():
        batched = encoder.encode(model, *encoder.pad(rows, tok.pad_token_id), exit_layer=4, pooling=pooling)
        alone = torch.cat(
            [
                encoder.encode(model, *encoder.pad([r], tok.pad_token_id), exit_layer=4, pooling=pooling)
                for r in rows
            ]
        )
    assert torch.allclose(batched, alone, atol=1e-4)


def test_truncation_and_empty_text(model_and_tokenizer) -> None:  # noqa: ANN001
    _, tok = model_and_tokenizer
    long, empty = encoder.tokenize(tok, ["word " * 200, ""], 16)
    assert len(long) == 16
    assert empty == [tok.eos_token_id]
