"""The torch side of the CPU engine: weights, LoRA adapters, and one forward step.

Blocking and thread-safe: a lock serialises forward steps and adapter loads, so an adapter can be
loaded between two decode steps of a running batch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .adapter_files import adapter_folder
from .base_model import model_dir as converted_model_dir
from .base_model import tokenizer_dir
from .chat_tokenizer import ChatTokenizer
from .config import CPUOptions
from .cpu_kernels import CPUKernels, load_kernels
from .fast_linear import (
    Int8Maker,
    Q4Maker,
    detach_from_checkpoint,
    fbgemm_available,
    int8_maker,
    pack_linears,
    quantize_linears,
)
from .gguf_loader import load_gguf_model
from .heap import trim_heap
from .layout import left_pad, plan_forwards, split_layout
from .lean_forward import KVCache, LeanLlama, unsupported_reason
from .lora import Routing, attach, detach, read_adapter
from .prefix_cache import PrefixCache, stack

log = logging.getLogger(__name__)

# What one prefill forward costs beyond its tokens (reading every float32 weight once, the Python
# around it), in token positions: measured here, a forward of 18 tokens took as long as ~40.
PREFILL_OVERHEAD_TOKENS = 24


@dataclass
class Prefill:
    """A batch after its prefill: the logits of each row's last prompt token, the cache and the
    mask/positions of its columns (decode steps extend them), and each row's prompt tokens that
    came from the prefix cache instead of being computed."""

    logits: torch.Tensor
    cache: Any
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    cached_tokens: list[int]


class ModelRunner:
    """Owns one causal LM and the LoRA adapters attached to it (:mod:`lora`), and runs it.

    ``source`` is a GGUF file (read tensor by tensor, int8 as it loads) or a transformers folder.
    """

    def __init__(self, source: Path, options: CPUOptions) -> None:
        self.source = Path(source)
        self.options = options
        self._lock = threading.Lock()
        self._model: Any = None  # our Llama tree (a GGUF) or a transformers model; adapters wrap its modules
        self._routing = Routing()  # each row's adapter, for a forward through the modules' own forward
        self._adapters: list[str] = []  # attached, oldest first
        self._lean: LeanLlama | None = None
        self.tokenizer: Any = None  # a ChatTokenizer: prompts on the event loop, text on the decode thread
        self.eos_ids: frozenset[int] = frozenset()
        self.pad_id = 0
        self.max_positions = 2048
        self.weights = options.weights
        self.forward_path = options.forward
        self.prefix_cache: PrefixCache | None = None

    # ---- loading ----

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if self.options.num_threads:
            torch.set_num_threads(self.options.num_threads)
        gguf = self.source.is_file()
        # A GGUF brings its tokenizer in its metadata: read out once into a folder (or the converted
        # SmolLM2 folder's, the same one, when that exists).
        tokenizer_folder = tokenizer_dir(self.source, converted_model_dir()) if gguf else self.source
        # tokenizers + jinja2, not transformers' AutoTokenizer: the same ids and text, ~80 MB less per replica.
        # One instance for the event loop (prompts) and the decode thread (text): ChatTokenizer never changes
        # its Rust tokenizer after loading, so both only borrow it to read. ("Already borrowed" came from
        # transformers' wrapper, which sets truncation and padding on every call; a second copy cost ~10 MB.)
        self.tokenizer = ChatTokenizer.from_folder(tokenizer_folder)
        model = self._load_gguf() if gguf else self._load_folder()
        trim_heap()  # the load's freed temporaries would otherwise stay resident
        if self.weights == "float16-packed":
            if fbgemm_available():
                log.info("packed %d Linear layers as float16", pack_linears(model))
            else:
                log.warning("fbgemm unavailable on this CPU build: serving float32 weights")
                self.weights = "float32"
        if self.forward_path == "lean":
            reason = unsupported_reason(model)
            if reason is None:
                self._lean = LeanLlama.with_kernels(model)
            else:
                log.warning("lean forward unavailable (%s): using the transformers forward", reason)
                self.forward_path = "transformers"
        if self._lean is not None and self.options.prefix_cache_mb > 0:
            self.prefix_cache = PrefixCache(
                self.options.prefix_cache_mb << 20, self.options.prefix_cache_block
            )
        self._model = model
        self.eos_ids = frozenset(_eos_ids(self.tokenizer, model.config))
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        )
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 2048))

    def _dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.options.weights == "bfloat16" else torch.float32

    def _int8_kernel(self) -> CPUKernels | None:
        """The kernels when int8 (or q4) weights were asked for and can run; else falls back to float16-packed."""
        if self.weights not in ("int8", "q4"):
            return None
        kernel = load_kernels()
        if kernel is None:
            log.warning("the %s kernel cannot run here: trying float16-packed weights", self.weights)
            self.weights = "float16-packed"
        return kernel

    def _load_gguf(self) -> Any:
        """Tensor by tensor from the GGUF: each Linear is packed to int8 as it is read (no float32 model), or with
        weights: q4 keeps its Q4_0/Q4_1 blocks."""
        kernel = self._int8_kernel()
        q4 = self.weights == "q4"
        keep_float = self.options.int8_prefill == "float32" and not q4
        maker: Int8Maker | None = None
        if kernel is not None:
            maker = Q4Maker(kernel) if q4 else int8_maker(kernel, keep_float)
        # int8 only: the embedding stays in the file's blocks too (its rows are dequantized when looked up).
        # The lean forward runs our own Llama tree (no transformers import); the transformers forward needs theirs.
        model = load_gguf_model(
            self.source,
            dtype=self._dtype(),
            make_linear=maker,
            quantized_embedding=maker is not None and not keep_float,
            transformers_modules=self.forward_path != "lean",
        )
        if kernel is not None and q4:
            log.info(
                "q4 weights (the file's Q4_0/Q4_1 blocks, int8 rows for other types) from %s",
                self.source.name,
            )
        elif kernel is not None:
            log.info("int8 weights from %s (prefill: %s)", self.source.name, self.options.int8_prefill)
        return model

    def _load_folder(self) -> Any:
        """A transformers folder (safetensors): loaded whole, then its Linears packed to int8."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(self.source), dtype=self._dtype())
        model.eval()
        kernel = self._int8_kernel()
        if kernel is not None and self.weights == "q4":
            log.warning(
                "weights: q4 keeps a GGUF's 4-bit blocks; a transformers folder has none: int8 weights"
            )
            self.weights = "int8"
        if kernel is not None:
            count = quantize_linears(model, kernel, keep_float=self.options.int8_prefill == "float32")
            log.info("int8 weights for %d Linear layers (prefill: %s)", count, self.options.int8_prefill)
            if self.options.int8_prefill == "int8":
                detach_from_checkpoint(model)  # the float32 weights' pages go with the file map
        return model

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # ---- adapters ----

    def load_adapter(self, name: str, path: Path) -> None:
        weights = read_adapter(adapter_folder(path))  # read and checked before the model is touched
        with self._lock:
            self._drop_prefixes(name)
            try:
                attach(self._model, self._routing, name, weights)
            finally:
                self._routing_changed()
            if name not in self._adapters:
                self._adapters.append(name)

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            self._drop_prefixes(name)
            detach(self._model, name)
            if name in self._adapters:
                self._adapters.remove(name)
            self._routing_changed()

    def _routing_changed(self) -> None:
        # The lean forward plans each batch's LoRA routing once; new or removed adapters change it.
        if self._lean is not None:
            self._lean.adapters_changed()

    def _drop_prefixes(self, name: str) -> None:
        if self.prefix_cache is not None:
            self.prefix_cache.drop(name)

    def loaded_adapters(self) -> list[str]:
        return list(self._adapters)

    def _rows(self, adapters: list[str | None]) -> list[str | None] | None:
        """``adapters`` to route by (None when no adapter is attached); refuses one that is not attached."""
        missing = {a for a in adapters if a is not None} - set(self._adapters)
        if missing:
            raise RuntimeError(f"adapter {sorted(missing)[0]!r} was requested but is not loaded")
        return adapters if self._adapters else None

    # ---- running ----

    @property
    def runs_states(self) -> bool:
        """Whether :meth:`states` runs here: it needs the lean forward (a Llama model)."""
        return self._lean is not None

    def states(
        self, prompts: Sequence[list[int]], adapter: str | None, layers: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each prompt through ``adapter`` (None: the base model) up to decoder layer ``layers``, final norm
        applied: hidden states right-padded to [batch, longest, hidden] and the 0/1 mask of real tokens.

        The same weights generation reads, so a head on them (the intent head) needs no copy of the model;
        under the lock like a forward, so it runs between two decode steps of a batch in flight.
        """
        if self._lean is None:
            raise RuntimeError("hidden states need the lean forward (a Llama model on the CPU engine)")
        if not prompts or not all(prompts):
            raise ValueError("states needs at least one prompt and one token per prompt")
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
            mask[i, : len(prompt)] = 1
        with self._lock, torch.inference_mode():
            return self._lean.states(ids, layers, rows=self._rows([adapter] * len(prompts))), mask

    def new_cache(self) -> Any:
        """An empty KV cache for one batch (``batch_select_indices`` drops finished rows)."""
        if self._lean is not None:
            return self._lean.new_cache()
        from transformers import DynamicCache

        return DynamicCache()

    def prefill(self, prompts: Sequence[list[int]], adapters: list[str | None]) -> Prefill:
        """Start a batch: each row's prompt through its adapter, left-padded into one KV cache.

        Without a prefix cache (or without the lean forward) the padded batch runs as one forward.
        With one, each row starts where its cached prefix ends. Rows then have very different
        lengths left to compute, so they run in groups of similar length (``plan_forwards``)
        rather than all padded to the longest; a later group also reuses what an earlier one
        cached. Each group's keys and values go into the batch's cache as the padded batch would have
        them as soon as the group ends.
        """
        ids, mask, positions = left_pad(prompts, self.pad_id)
        if self.prefix_cache is None or self._lean is None:
            cache = self.new_cache()
            logits = self.forward(ids, mask, positions, cache, adapters)
            return Prefill(logits, cache, mask, positions, [0] * len(prompts))
        prefixes = self.prefix_cache
        batch = len(prompts)
        row_logits: list[torch.Tensor | None] = [None] * batch
        cached = [0] * batch
        with self._lock, torch.inference_mode():
            # The batch's cache first, each group's rows copied in as the group ends: the groups' own caches
            # are never all alive at once beside it (a batch's KV held once, plus one group's).
            cache = self._lean.new_cache()
            cache.begin(batch, mask.shape[1], extra=0)
            # At least the last prompt token is computed: its logits start the completion.
            remaining = [
                len(p) - len(prefixes.match(a or "", p, len(p) - 1, record=False)) * prefixes.block
                for a, p in zip(adapters, prompts, strict=True)
            ]
            for group in plan_forwards(remaining, PREFILL_OVERHEAD_TOKENS, self.options.max_prefill_tokens):
                group.sort(
                    key=lambda r: (adapters[r] is not None, adapters[r] or "")
                )  # LoRA runs side by side
                done = self._prefill_group(
                    [prompts[r] for r in group], [adapters[r] for r in group], cache, group
                )
                for r, (last, n) in zip(group, done, strict=True):
                    row_logits[r], cached[r] = last, n
        computed = [x for x in row_logits if x is not None]
        assert len(computed) == batch  # plan_forwards puts every row in exactly one group
        return Prefill(torch.stack(computed), cache, mask, positions, cached)

    def _prefill_group(
        self, prompts: list[list[int]], adapters: list[str | None], into: KVCache, rows: list[int]
    ) -> list[tuple[torch.Tensor, int]]:
        """One padded forward over ``prompts`` from where their cached prefixes end; caches their new
        blocks and writes each prompt's keys and values to row ``rows[j]`` of the batch's cache ``into``.
        Per prompt: its logits and how many of its tokens came from the cache. Under the lock."""
        assert self.prefix_cache is not None and self._lean is not None
        prefixes = self.prefix_cache
        chains = [prefixes.match(a or "", p, len(p) - 1) for a, p in zip(adapters, prompts, strict=True)]
        done = [len(chain) * prefixes.block for chain in chains]
        layout = split_layout(prompts, done, self.pad_id)
        head, end = layout.cached_columns, layout.attention_mask.shape[1]
        cache = self._lean.new_cache()
        cache.load_prefix(len(prompts), head, [stack(c) if c else None for c in chains], extra=end - head)
        logits = self._lean.forward(
            layout.input_ids,
            layout.attention_mask,
            layout.position_ids[:, head:],
            cache,
            rows=self._rows(adapters),
        )
        assert cache.keys is not None and cache.values is not None
        out = []
        for j, (prompt, adapter, chain, n) in enumerate(zip(prompts, adapters, chains, done, strict=True)):
            start = layout.computed_start(len(prompt), n)
            keys, values = cache.keys[:, j, :, start:end], cache.values[:, j, :, start:end]
            prefixes.insert(adapter or "", prompt, chain, keys, values)
            # The cached prefix, then what was computed: the row as one padded forward would have left it.
            into.put_row(
                rows[j],
                [
                    (cache.keys[:, j, :, head - n : head], cache.values[:, j, :, head - n : head]),
                    (keys, values),
                ],
            )
            out.append((logits[j], n))
        return out

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any,
        adapters: list[str | None],
    ) -> torch.Tensor:
        """Logits of the last position of each row, each row through its own adapter (None: base)."""
        if self._lean is not None:
            return self._forward_lean(input_ids, attention_mask, position_ids, cache, adapters)
        kwargs: dict[str, Any] = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        with self._lock, torch.inference_mode():
            self._routing.set_rows(self._rows(adapters))
            try:
                out = self._model(**kwargs)
            finally:
                self._routing.set_rows(None)
        return out.logits[:, -1, :]

    def _forward_lean(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any,
        adapters: list[str | None],
    ) -> torch.Tensor:
        assert self._lean is not None
        with self._lock, torch.inference_mode():
            return self._lean.forward(
                input_ids, attention_mask, position_ids, cache, rows=self._rows(adapters)
            )


def _eos_ids(tokenizer: ChatTokenizer, config: Any) -> set[int]:
    """End tokens: the tokenizer's and its folder's generation_config.json's, and the model config's (a GGUF's own)."""
    ids = set(tokenizer.eos_ids())
    eos = getattr(config, "eos_token_id", None)
    ids.update(int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None)
    return ids
