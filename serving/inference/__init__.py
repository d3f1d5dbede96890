"""The generator: LLM engines with LoRA adapters behind one async interface.

``build_engine(GeneratorConfig(...))`` returns an :class:`Engine`: transformers + PEFT on CPU or
vLLM on GPUs. Importing this package loads neither torch nor vllm.
"""

from .base_model import BASE_MODEL_ID, ensure_base_model
from .builder import build_engine
from .config import CPUOptions, GeneratorConfig, VLLMOptions
from .engine import Engine
from .errors import AdapterIncompatible, EngineNotReady, EngineOverloaded, PromptTooLong
from .types import ChatMessage, GenerationRequest, GenerationResult, StreamChunk, Usage

__all__ = [
    "BASE_MODEL_ID",
    "AdapterIncompatible",
    "CPUOptions",
    "ChatMessage",
    "Engine",
    "EngineNotReady",
    "EngineOverloaded",
    "GenerationRequest",
    "GenerationResult",
    "GeneratorConfig",
    "PromptTooLong",
    "StreamChunk",
    "Usage",
    "VLLMOptions",
    "build_engine",
    "ensure_base_model",
]
