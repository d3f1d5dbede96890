"""What an intent head reads: the base LLM's pooled hidden states at the head's exit layer, through the
version's intent LoRA.

Two backbones compute them. :class:`EngineBackbone` runs the CPU engine's own model (its quantised weights,
the intent LoRAs attached beside the answer adapters under names of their own): the Generator replica then
holds one copy of the base model, not two; a float32 copy would cost 4 bytes per parameter, more than the
rest of a 135M replica and about 28 GB for a 7B model. :class:`TransformersBackbone` loads the base in float32
with transformers and PEFT: what training and evaluation run, and serving where the engine's model is out of
reach (vLLM, llama.cpp, a remote engine, a non-Llama model).

int8 weights move the pooled vector by a rounding error; the head's choices on a validation split agree with
the float32 backbone's (docs/benchmarks.md, "The intent head on the engine's model").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from . import encoder
from .config import IntentConfig
from .encoder import Pooling


class Backbone(Protocol):
    """Pooled hidden states of token ids through a named intent LoRA (thread-safe)."""

    device: str

    def tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]: ...

    def attach(self, name: str, lora: Path) -> None: ...

    def detach(self, name: str) -> None: ...

    def encode(
        self, ids: Sequence[list[int]], name: str, exit_layer: int, pooling: Pooling
    ) -> torch.Tensor: ...


class StateRunner(Protocol):
    """The part of the CPU engine's model runner an :class:`EngineBackbone` uses (serving/inference's
    ModelRunner; the stages never import each other, wiring.py hands it over)."""

    tokenizer: Any

    def load_adapter(self, name: str, path: Path) -> None: ...

    def unload_adapter(self, name: str) -> None: ...

    def states(
        self, prompts: Sequence[list[int]], adapter: str | None, layers: int
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


# Intent LoRAs share the runner with the engine's answer adapters (named a_<slug>_<digest>): their own prefix.
_PREFIX = "intent:"


class EngineBackbone:
    """The CPU engine's model: no second copy of the base in the replica (see the module docstring)."""

    device = "cpu"

    def __init__(self, runner: Callable[[], StateRunner]) -> None:
        """``runner``: the started engine's runner (called at each use: the engine starts after this is built)."""
        self._runner = runner

    def tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        tokenizer = self._runner().tokenizer
        # transformers' tokenizer(texts, add_special_tokens=False, truncation=True, max_length=n) keeps the
        # first n ids, which training saw; an empty text becomes one EOS token, as encoder.tokenize does.
        out = [tokenizer.encode(text, add_special_tokens=False)[:max_length] for text in texts]
        return [ids if ids else [tokenizer.eos_token_id] for ids in out]

    def attach(self, name: str, lora: Path) -> None:
        self._runner().load_adapter(_PREFIX + name, lora)

    def detach(self, name: str) -> None:
        self._runner().unload_adapter(_PREFIX + name)

    def encode(self, ids: Sequence[list[int]], name: str, exit_layer: int, pooling: Pooling) -> torch.Tensor:
        states, mask = self._runner().states(ids, _PREFIX + name, exit_layer)
        return encoder.pool(states, mask, pooling)


class TransformersBackbone:
    """The base model in float32 (transformers) with the intent LoRAs as named PEFT adapters.

    A request switches to its own version (``set_adapter``) under a lock, so concurrent requests for different
    versions never see each other's weights.
    """

    def __init__(self, config: IntentConfig, base_model: Callable[[], Path]) -> None:
        """``base_model``: the converted base model folder (called once, when the model first loads)."""
        self.config = config
        self._base_model = base_model
        self._lock = threading.Lock()  # the adapter set + forward are one step
        self._model: Any = None
        self._tokenizer: Any = None
        self.device = "cpu"

    def tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        self._load()
        return encoder.tokenize(self._tokenizer, texts, max_length)

    def attach(self, name: str, lora: Path) -> None:
        from peft import PeftModel

        self._load()
        with self._lock:
            if isinstance(self._model, PeftModel):
                self._model.load_adapter(str(lora), adapter_name=name)
            else:
                self._model = PeftModel.from_pretrained(self._model, str(lora), adapter_name=name)
            self._model.eval()

    def detach(self, name: str) -> None:
        with self._lock:
            self._model.delete_adapter(name)

    def encode(self, ids: Sequence[list[int]], name: str, exit_layer: int, pooling: Pooling) -> torch.Tensor:
        input_ids, mask = encoder.pad(ids, self._tokenizer.pad_token_id or 0, self.device)
        with self._lock, torch.inference_mode():
            self._model.set_adapter(name)
            return encoder.encode(self._model, input_ids, mask, exit_layer, pooling)

    def _load(self) -> None:
        """The base model and tokenizer, once."""
        with self._lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if self.config.threads:
                torch.set_num_threads(self.config.threads)
            path = Path(self.config.base_model_path) if self.config.base_model_path else self._base_model()
            want_cuda = self.config.device == "cuda" or (
                self.config.device == "auto" and torch.cuda.is_available()
            )
            self.device = "cuda" if want_cuda else "cpu"
            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
            model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
            self._model = model.to(self.device).eval()
