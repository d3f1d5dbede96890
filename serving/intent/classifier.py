"""The served intent classifier: one base LLM, many adapter versions side by side.

Each adapter version in the registry is a PEFT LoRA folder plus an intent head (see head.py).
Versions load once into the same base model as named adapters (backbone.py: the CPU engine's own model in
the Generator replica, else a float32 copy through transformers and PEFT); each request runs through its
own version's, so concurrent requests for different versions never see each other's weights. The forward
pass stops at the head's exit layer: classification is one partial forward, never generation.

The work splits in two so a pipeline can overlap it with retrieval: :meth:`IntentClassifier.head_scores`
(the model: needs only the masked query) and :func:`decide` (pure: mixes in the retrieval vote once the
nearest examples are known). :meth:`IntentClassifier.classify` is the two in sequence.

A version may also carry a fine-tuned sentence encoder with its own intent head (sentence_encoder.py):
it runs beside the LLM forward, outside the model lock, and its probabilities join the head's and the
vote's in the shares the two specs give (:func:`vote.blend`).

A head that reads the query's sentence embedding (``HeadSpec.query_embedding``) gets it from this
classifier's own embedder, computed beside the LLM forward rather than taken from retrieval: the
head's hop then still needs only the masked text and keeps overlapping retrieval, for one more
query embedding (about 5 ms of CPU with onnx) per request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from finserve.contracts import AdapterIncompatible, AdapterNotFound, AdapterRef, AdapterRegistry

from . import vote
from .assets import IntentAssets, QueryEmbedder
from .backbone import Backbone, TransformersBackbone
from .config import IntentConfig
from .decision import HeadScores, IntentPrediction, decide, wants_head
from .head import HeadSpec, IntentHead, has_head, intent_lora_folder, load_head
from .sentence_encoder import EncoderClassifier, EncoderSpec, has_encoder, load_encoder, read_spec

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    name: str  # the PEFT adapter name inside the shared model
    spec: HeadSpec
    head: IntentHead
    labels: list[str]
    encoder: tuple[EncoderSpec, EncoderClassifier] | None = (
        None  # the version's fine-tuned encoder, if it has one
    )


class IntentClassifier:
    """``classify(masked_text, adapter, examples)`` for the pipeline; see the module docstring."""

    def __init__(
        self,
        config: IntentConfig,
        registry: AdapterRegistry | None = None,
        assets: IntentAssets | None = None,
        backbone: Backbone | None = None,
    ) -> None:
        """``assets`` (finserve.serving.wiring.intent_assets()) is needed once a head loads; a vote-only
        classifier runs without. ``backbone``: the model the heads read (None: a float32 base model of its own,
        loaded with the first head; see backbone.py)."""
        self.config = config
        self.registry = registry
        self._assets = assets
        self.backbone = backbone or TransformersBackbone(config, lambda: self._need_assets().base_model())
        self._lock = threading.Lock()  # guards the loaded versions (the backbone guards its own model)
        self._loaded: OrderedDict[AdapterRef, _Loaded | None] = OrderedDict()  # None: adapter has no head
        self._embedder: QueryEmbedder | None = None  # loaded with the first head that reads query embeddings

    def use_backbone(self, backbone: Backbone) -> None:
        """Read the heads off ``backbone`` from now on; only before the first head loads (loaded ones live in
        the backbone they were attached to)."""
        with self._lock:
            if any(loaded is not None for loaded in self._loaded.values()):
                raise RuntimeError(
                    "intent heads are loaded already: choose the backbone before the first one"
                )
            self.backbone = backbone

    def ready(self) -> bool:
        """True when every configured method can answer (the vote needs nothing; the head needs a registry)."""
        return self.config.method == "vote" or self.registry is not None

    async def classify(
        self, masked_text: str, adapter: AdapterRef, examples: Sequence[vote.Example]
    ) -> IntentPrediction:
        head = await self.head_scores(masked_text, adapter) if wants_head(self.config, adapter) else None
        return decide(head, examples, self.config.vote_temperature)

    async def head_scores(self, masked_text: str, adapter: AdapterRef) -> HeadScores | None:
        """The head's probabilities for one query; None when the vote alone decides (see :func:`wants_head`)."""
        if not wants_head(self.config, adapter):
            return None
        loaded = await asyncio.to_thread(self._ensure, adapter)
        if loaded is None:
            log.warning("adapter %s carries no intent head: using the retrieval vote", adapter)
            return None
        probs = await asyncio.to_thread(self._head_probabilities, loaded, [masked_text])
        return HeadScores(
            probabilities=dict(zip(loaded.labels, probs[0], strict=True)),
            retrieval_weight=loaded.spec.retrieval_weight,
            vote_temperature=loaded.spec.vote_temperature,
            encoder=loaded.encoder is not None,
        )

    def preload(self, adapters: Sequence[AdapterRef]) -> None:
        """Load adapter versions ahead of traffic (the first request for one otherwise pays it)."""
        for ref in adapters:
            if not ref.is_base:
                self._ensure(ref)

    def probabilities(self, adapter: AdapterRef, texts: Sequence[str]) -> list[list[float]]:
        """Head probabilities (in ``labels(adapter)`` order; blended with the version's encoder if it has one)."""
        loaded = self._ensure(adapter)
        if loaded is None:
            raise AdapterNotFound(f"adapter {adapter} has no intent head")
        return self._head_probabilities(loaded, list(texts))

    def labels(self, adapter: AdapterRef) -> list[str]:
        loaded = self._ensure(adapter)
        if loaded is None:
            raise AdapterNotFound(f"adapter {adapter} has no intent head")
        return list(loaded.labels)

    # ---- internals ----

    def _ensure(self, ref: AdapterRef) -> _Loaded | None:
        with self._lock:
            if ref in self._loaded:
                self._loaded.move_to_end(ref)
                return self._loaded[ref]
            if self.registry is None:
                raise AdapterNotFound(f"adapter {ref}: the intent classifier has no registry")
            _, folder = self.registry.fetch(ref)
            loaded = self._load(ref, folder) if has_head(folder) else None
            self._loaded[ref] = loaded
            while len(self._loaded) > self.config.max_loaded_adapters:
                old_ref, old = self._loaded.popitem(last=False)
                if old is not None:
                    self.backbone.detach(old.name)
                    log.info("unloaded adapter %s", old_ref)
            return loaded

    def _load(self, ref: AdapterRef, folder: Path) -> _Loaded:
        spec, head, labels = load_head(folder)
        if spec.query_embedding is not None:
            embedder = self._query_embedder()
            if (embedder.model_id, embedder.dim) != (spec.query_embedding.embedder, spec.query_embedding.dim):
                # The adapter is intact but unusable with this deployment's embedder: refuse it loudly.
                raise AdapterIncompatible(
                    f"adapter {ref}: its intent head reads {spec.query_embedding.embedder} "
                    f"({spec.query_embedding.dim}-d) query embeddings, this classifier runs {embedder.model_id} "
                    f"({embedder.dim}-d); set intent.embedder_path to the head's embedder"
                )
        encoder_part = self._load_encoder(ref, folder, len(labels)) if has_encoder(folder) else None
        name = f"{ref.name}@{ref.version}".replace(".", "_")  # PEFT adapter names become module keys: no dots
        self.backbone.attach(name, intent_lora_folder(folder))
        log.info("loaded adapter %s (exit layer %d, %s pooling)", ref, spec.exit_layer, spec.pooling)
        device = self.backbone.device
        return _Loaded(name=name, spec=spec, head=head.to(device), labels=labels, encoder=encoder_part)

    def _load_encoder(
        self, ref: AdapterRef, folder: Path, n_labels: int
    ) -> tuple[EncoderSpec, EncoderClassifier]:
        assets = self._need_assets()
        base = (
            Path(self.config.embedder_path) if self.config.embedder_path else assets.default_embedder_path()
        )
        wanted, have = read_spec(folder).base, assets.fingerprint(base)
        if have != wanted:
            raise AdapterIncompatible(
                f"adapter {ref}: its fine-tuned encoder starts from {wanted}, this classifier has {have}; "
                "set intent.embedder_path to that encoder"
            )
        spec, model = load_encoder(folder, base, n_labels)
        log.info(
            "adapter %s: fine-tuned encoder (layers %s trained) weighs %.2f",
            ref,
            spec.trained_layers,
            spec.weight,
        )
        return spec, model.to(self.backbone.device)

    def _query_embedder(self) -> QueryEmbedder:
        if self._embedder is None:
            self._embedder = self._need_assets().embedder(
                self.config.embedder_path,
                threads=self.config.embedder_threads,
                backend=self.config.embedder_backend,
            )
        return self._embedder

    def _need_assets(self) -> IntentAssets:
        if self._assets is None:
            raise RuntimeError(
                "IntentClassifier needs its assets to load an intent head: build it with "
                "finserve.serving.wiring.build_intent_classifier (or pass assets=intent_assets())"
            )
        return self._assets

    def _head_probabilities(self, loaded: _Loaded, texts: list[str]) -> list[list[float]]:
        import torch

        ids = self.backbone.tokenize(texts, loaded.spec.max_length)
        device = self.backbone.device
        query = None
        if loaded.spec.query_embedding is not None:  # the embedder is not the shared model: no lock needed
            query = torch.from_numpy(self._query_embedder().embed(texts)).to(device)
        # Each version has its own encoder.
        fine_tuned = loaded.encoder[1].probabilities(texts) if loaded.encoder is not None else None
        pooled = self.backbone.encode(ids, loaded.name, loaded.spec.exit_layer, loaded.spec.pooling)
        with torch.inference_mode():
            probs = torch.softmax(loaded.head(pooled.to(device), query).float(), dim=-1).cpu()
        if loaded.encoder is not None:
            probs = vote.blend(probs, fine_tuned, loaded.spec.retrieval_weight, loaded.encoder[0].weight)
        return probs.tolist()
