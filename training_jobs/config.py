"""The training job's config: one YAML file per adapter version (training_jobs/configs/*.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from finserve.contracts import AdapterRef, StrictModel
from finserve.serving.intent.encoder import Pooling

Quantization = Literal["none", "nf4", "auto"]
Device = Literal["auto", "cpu", "cuda"]


class DataSettings(StrictModel):
    """Which rows train and validate the adapter."""

    csv: str | None = Field(
        None,
        description="Banking77-style text,category CSV; None: the repository's data/banking77/train.csv.",
    )
    max_train_per_intent: int | None = Field(
        None,
        ge=1,
        description="Keep at most this many training rows per intent (None: all): smaller, faster versions.",
    )
    max_validation_per_intent: int | None = Field(
        None,
        ge=1,
        description="Keep at most this many validation rows per intent (None: all): for quick runs only.",
    )
    max_length: int = Field(
        64, ge=4, le=512, description="Tokens kept per query (Banking77's longest has 96)."
    )
    dev_per_intent: int | None = Field(
        None,
        ge=1,
        description="Move this many training rows per intent (seeded, stratified) to a dev split that picks the epoch "
        "and the mix weight, so validation is only reported; they stay in the retrieval index. None: pick on validation.",
    )
    seed: int = Field(0, description="Seed for the subsets above (the dev split uses seed + 1).")


class LoraSettings(StrictModel):
    """The PEFT LoRA on the base LLM."""

    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Linear layers that get LoRA matrices (module names in the Llama decoder).",
    )
    layers: int = Field(
        4,
        ge=1,
        description="How many decoder layers right below the exit layer carry LoRA; the ones below stay frozen "
        "and their output is computed once and cached.",
    )


class HeadSettings(StrictModel):
    """The intent head on the LLM's hidden states, and how serving mixes in the retrieval vote."""

    exit_layer: int = Field(
        30,
        ge=1,
        description="Decoder layers run before pooling (SmolLM2-135M has 30); later layers are skipped.",
    )
    pooling: Pooling = Field("mean", description="mean, last token, or both concatenated (mean_last).")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the pooled vector while training.")
    retrieval_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Weight of the retrieval vote mixed in at serving time (0: head only).",
    )
    weight_from_dev: bool = Field(
        False,
        description="With a dev split: serve the weight of the sweep (0.0-1.0) with the best dev accuracy at the best "
        "epoch instead of retrieval_weight (which still scores the epochs).",
    )
    vote_temperature: float = Field(0.05, gt=0.0, description="Softmax temperature of that vote.")
    vote_k: int = Field(
        10,
        ge=1,
        description="Neighbours in the vote when training scores the served mix (serving: retrieval.example_k).",
    )
    query_embedding: bool = Field(
        False,
        description="The head also reads the retrieval embedder's vector of the query (serving computes it beside "
        "the LLM forward); the LoRA is trained jointly with it, so it learns what the embedder misses.",
    )
    query_scale: float = Field(
        20.0,
        gt=0.0,
        description="Factor on the unit-length query vector (about sqrt(dim): entries near the LLM "
        "state's scale, so one learning rate suits both parts of the head).",
    )


class OptimSettings(StrictModel):
    """Optimiser, schedule and stopping."""

    epochs: int = Field(4, ge=1, description="Most passes over the training rows.")
    batch_size: int = Field(32, ge=1, description="Rows per optimiser step.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate of the LoRA matrices.")
    head_lr: float = Field(3e-3, gt=0, description="Peak learning rate of the intent head.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(
        0.06, ge=0, lt=1, description="Share of steps with a linear warm-up; then linear decay."
    )
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Cross-entropy label smoothing.")
    patience: int = Field(
        1,
        ge=1,
        description="Stop after this many epochs without a better validation accuracy; the best epoch is kept.",
    )
    seed: int = Field(77, description="Seed for initialisation and shuffling.")


class EncoderSettings(StrictModel):
    """A fine-tuned sentence encoder with its own intent head, shipped in the version beside the LoRA.

    Serving averages three opinions: the LLM head, this encoder and the retrieval vote; the LLM head
    gets ``1 - head.retrieval_weight - encoder.weight``.
    """

    enabled: bool = Field(
        False, description="Train and ship the encoder (the retrieval embedder's weights as start)."
    )
    weight: float = Field(
        1 / 3, gt=0.0, le=1.0, description="Share of the encoder's probabilities in the served mix."
    )
    train_layers: int = Field(
        6,
        ge=1,
        description="Top encoder layers trained (MiniLM has 6); the embeddings and lower layers stay frozen "
        "and their output is computed once and cached.",
    )
    epochs: int = Field(
        3, ge=1, description="Passes over the training rows (fixed schedule; the last is kept)."
    )
    batch_size: int = Field(32, ge=1, description="Rows per optimiser step.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate of the trained layers.")
    head_lr: float = Field(3e-3, gt=0, description="Peak learning rate of the encoder's intent head.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the pooled vector while training.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Cross-entropy label smoothing.")
    max_length: int = Field(64, ge=4, le=512, description="Tokens per query kept.")


class AnswerSettings(StrictModel):
    """Supervised fine-tuning of the generator on the bank's answers (see answer_trainer.py).

    Prompts are the ones serving builds; targets are the curated answer of each row's intent. The
    LoRA of layers ``first_layer`` .. the top is trained on the full model; the intent LoRA below the
    head's exit layer is frozen inside the same adapter.
    """

    enabled: bool = Field(
        False, description="Tune the generator for answers (else the LoRA only serves the intent head)."
    )
    per_intent: int = Field(4, ge=1, description="Training rows per intent used as answer examples (seeded).")
    dev_per_intent: int = Field(
        1, ge=0, description="Further training rows per intent whose loss is reported per epoch."
    )
    first_layer: int = Field(
        18,
        ge=1,
        description="Lowest decoder layer with answer LoRA; the layers below are cached once per example.",
    )
    epochs: int = Field(2, ge=1, description="Passes over the examples (fixed schedule; the last is kept).")
    batch_size: int = Field(4, ge=1, description="Examples per optimiser step.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate (linear warm-up, then linear decay).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with a linear warm-up.")
    seed: int = Field(7, description="Seed for the rows drawn (the dev rows use seed + 1).")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Compute dtype of the answer stage's forward and backward (bfloat16 autocast; the LoRA "
        "weights and optimiser stay float32). auto: bfloat16 on CUDA and on CPUs with native bfloat16 "
        "(avx512_bf16 or AMX), float32 elsewhere.",
    )
    serving_config: str | None = Field(
        None,
        description="Serving config YAML whose retrieval, guard and system prompt build the prompts (what the "
        "version will be served with); None: the built-in default, its index built first when the data dir has none.",
    )


class TrainConfig(StrictModel):
    """One training job: what to train, on which rows, and the registry version it publishes."""

    name: str = Field(description="Adapter name in the registry.")
    version: str = Field(description="Semantic version to publish; publishing an existing version fails.")
    description: str = Field("", description="Free text stored in the manifest.")
    base_model_path: str | None = Field(
        None, description="Converted base model folder; None: ensure_base_model() under the data dir."
    )
    quantization: Quantization = Field(
        "auto",
        description="nf4: QLoRA (4-bit NF4, double quantization; needs CUDA); none: fp32 LoRA; auto: nf4 on CUDA.",
    )
    device: Device = Field("auto", description="Where training runs; auto: cuda when available.")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch's default).")
    data: DataSettings = Field(default_factory=DataSettings, description="Rows and split.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings.")
    head: HeadSettings = Field(default_factory=HeadSettings, description="Intent head settings.")
    optim: OptimSettings = Field(default_factory=OptimSettings, description="Optimisation settings.")
    encoder: EncoderSettings = Field(
        default_factory=EncoderSettings, description="Fine-tuned sentence encoder."
    )
    answers: AnswerSettings = Field(
        default_factory=AnswerSettings, description="Generator tuning on answers."
    )
    intent_from: str | None = Field(
        None,
        description="NAME@VERSION in the registry whose intent parts (the LoRA below the exit layer, the head, "
        "the fine-tuned encoder) this version takes unchanged instead of training them; needs answers.enabled. "
        "Its intent figures carry over, since the served intent reads only those parts.",
    )

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        AdapterRef(name="x", version=v)  # reuses the registry's semver rule
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        AdapterRef(name=v, version="0.0.0")
        return v

    @model_validator(mode="after")
    def _layers_fit(self) -> TrainConfig:
        if self.lora.layers > self.head.exit_layer:
            raise ValueError(
                f"lora.layers ({self.lora.layers}) cannot exceed head.exit_layer ({self.head.exit_layer})"
            )
        return self

    @model_validator(mode="after")
    def _dev_for_weight(self) -> TrainConfig:
        if self.head.weight_from_dev and self.data.dev_per_intent is None:
            raise ValueError("head.weight_from_dev needs a dev split (data.dev_per_intent)")
        return self

    @model_validator(mode="after")
    def _mix_fits(self) -> TrainConfig:
        if self.encoder.enabled and self.head.retrieval_weight + self.encoder.weight > 1.0 + 1e-9:
            raise ValueError(
                f"head.retrieval_weight ({self.head.retrieval_weight}) + encoder.weight "
                f"({self.encoder.weight}) exceed 1: the LLM head's share would be negative"
            )
        return self

    @model_validator(mode="after")
    def _answers_fit(self) -> TrainConfig:
        if self.intent_from is not None:
            if not self.answers.enabled:
                raise ValueError("intent_from needs answers.enabled: the version would be a copy")
            AdapterRef.parse(self.intent_from)
        return self

    @property
    def ref(self) -> AdapterRef:
        return AdapterRef(name=self.name, version=self.version)

    @property
    def lora_layer_ids(self) -> list[int]:
        """The decoder layers with LoRA: the ``lora.layers`` right below the exit layer."""
        return list(range(self.head.exit_layer - self.lora.layers, self.head.exit_layer))
