"""The adapter registry: ``NAME/VERSION/`` folders of PEFT LoRA files plus ``manifest.json``.

The registry root is a local path or any fsspec URL (``s3://bucket/adapters``, ``gs://...``), so
clusters can keep adapters in object storage. Training writes versions with :meth:`publish`;
serving resolves ``NAME@VERSION`` with :meth:`fetch` (a verified local copy) and never falls back
silently: a missing version raises :class:`AdapterNotFound`, a tampered one :class:`AdapterCorrupt`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
from pydantic import Field

from .adapters import AdapterRef, semver_key
from .config import StrictModel

MANIFEST = "manifest.json"


class AdapterNotFound(LookupError):
    """The registry has no such adapter name or version."""


class AdapterCorrupt(ValueError):
    """The adapter's files do not match the checksum in its manifest."""


class AdapterIncompatible(ValueError):
    """The adapter is intact but does not fit the model that would load it: its manifest names another
    base model, or its intent head reads query embeddings from another embedder than the deployment runs.
    Here, not in serving/inference, because both the generator and the intent classifier raise it."""


class AdapterManifest(StrictModel):
    """What a registry version promises about its files."""

    schema_version: int = Field(1, description="Manifest format version.")
    name: str = Field(description="Adapter name.")
    version: str = Field(description="Semantic version.")
    base_model: str = Field(description="Base model id the LoRA was trained on.")
    checksum: str = Field(description="sha256 over the sorted adapter files (see files_checksum).")
    files: dict[str, str] = Field(default_factory=dict, description="File name -> sha256 of that file.")
    training: dict[str, Any] = Field(default_factory=dict, description="The training config used.")
    data_checksum: str | None = Field(None, description="sha256 of the training data file.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Metrics on the validation split.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC), description="UTC creation time.")
    description: str = Field("", description="Free text for humans.")

    @property
    def ref(self) -> AdapterRef:
        return AdapterRef(name=self.name, version=self.version)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def files_checksum(file_hashes: dict[str, str]) -> str:
    """One digest over ``name:sha256`` lines in sorted order, so renames are caught too."""
    lines = "".join(f"{name}:{digest}\n" for name, digest in sorted(file_hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def hash_folder(folder: str | Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative POSIX paths), the manifest excluded."""
    root = Path(folder)
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(root).as_posix()] = sha256_file(p)
    return out


class AdapterRegistry:
    """Read and write a registry rooted at a local path or fsspec URL."""

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None) -> None:
        self.root = str(root).rstrip("/")
        self.fs, self._path = fsspec.core.url_to_fs(self.root)
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def _join(self, *parts: str) -> str:
        return "/".join([self._path, *parts])

    def names(self) -> list[str]:
        if not self.fs.exists(self._path):
            return []
        return sorted(
            os.path.basename(p.rstrip("/")) for p in self.fs.ls(self._path, detail=False) if self.fs.isdir(p)
        )

    def versions(self, name: str) -> list[str]:
        base = self._join(name)
        if not self.fs.exists(base):
            return []
        found = [
            os.path.basename(p.rstrip("/"))
            for p in self.fs.ls(base, detail=False)
            if self.fs.exists(f"{p.rstrip('/')}/{MANIFEST}")
        ]
        return sorted(found, key=semver_key)

    def latest(self, name: str) -> AdapterRef:
        versions = self.versions(name)
        if not versions:
            raise AdapterNotFound(f"adapter {name!r} has no versions in {self.root}")
        return AdapterRef(name=name, version=versions[-1])

    def manifest(self, ref: AdapterRef | str) -> AdapterManifest:
        ref = AdapterRef.parse(ref) if isinstance(ref, str) else ref
        path = self._join(ref.name, ref.version, MANIFEST)
        if not self.fs.exists(path):
            raise AdapterNotFound(f"adapter {ref} is not in the registry at {self.root}")
        with self.fs.open(path, "r") as fh:
            return AdapterManifest.model_validate_json(fh.read())

    def list(self) -> list[AdapterManifest]:
        return [self.manifest(AdapterRef(name=n, version=v)) for n in self.names() for v in self.versions(n)]

    def verify(self, ref: AdapterRef | str) -> AdapterManifest:
        """Recompute every file hash; raise AdapterCorrupt naming what differs."""
        manifest = self.manifest(ref)
        folder = self.local_path(manifest.ref, verify=False)
        actual = hash_folder(folder)
        problems = []
        for name, digest in manifest.files.items():
            if name not in actual:
                problems.append(f"{name}: missing")
            elif actual[name] != digest:
                problems.append(f"{name}: sha256 {actual[name][:12]}… != manifest {digest[:12]}…")
        problems += [f"{name}: not in manifest" for name in actual.keys() - manifest.files.keys()]
        if not problems and files_checksum(actual) != manifest.checksum:
            problems.append("folder checksum does not match the manifest")
        if problems:
            raise AdapterCorrupt(f"adapter {manifest.ref} failed verification: " + "; ".join(problems))
        return manifest

    def local_path(self, ref: AdapterRef | str, verify: bool = True) -> Path:
        """A local folder with the adapter's files (downloaded into cache_dir for remote registries)."""
        ref = AdapterRef.parse(ref) if isinstance(ref, str) else ref
        if verify:
            self.verify(ref)
        remote = self._join(ref.name, ref.version)
        if not self.fs.exists(remote):
            raise AdapterNotFound(f"adapter {ref} is not in the registry at {self.root}")
        if self._is_local():
            return Path(remote)
        cache = (self.cache_dir or Path(tempfile.gettempdir()) / "finserve-adapters") / ref.name / ref.version
        if not (cache / MANIFEST).exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=cache.parent))
            self.fs.get(remote + "/", str(tmp), recursive=True)
            shutil.rmtree(cache, ignore_errors=True)
            tmp.rename(cache)
        return cache

    def fetch(self, ref: AdapterRef | str) -> tuple[AdapterManifest, Path]:
        """Verified manifest and local folder, ready for PEFT or vLLM to load."""
        ref = AdapterRef.parse(ref) if isinstance(ref, str) else ref
        path = self.local_path(ref, verify=False)
        manifest = self.manifest(ref)
        actual = hash_folder(path)
        if files_checksum(actual) != manifest.checksum:
            self.verify(ref)  # raises with the per-file detail
        return manifest, path

    def publish(
        self, folder: str | Path, manifest: AdapterManifest, overwrite: bool = False
    ) -> AdapterManifest:
        """Copy a PEFT adapter folder in as ``NAME/VERSION`` with checksums filled in."""
        hashes = hash_folder(folder)
        if not hashes:
            raise ValueError(f"{folder} holds no adapter files")
        final = manifest.model_copy(update={"files": hashes, "checksum": files_checksum(hashes)})
        dest = self._join(final.name, final.version)
        if self.fs.exists(f"{dest}/{MANIFEST}") and not overwrite:
            raise FileExistsError(f"adapter {final.ref} already exists in {self.root}; bump the version")
        self.fs.makedirs(dest, exist_ok=True)
        for rel in hashes:
            target = f"{dest}/{rel}"
            parent = target.rsplit("/", 1)[0]
            self.fs.makedirs(parent, exist_ok=True)
            self.fs.put_file(str(Path(folder) / rel), target)
        # The manifest goes last: a version without one is invisible, so a half copy never serves.
        with self.fs.open(f"{dest}/{MANIFEST}", "w") as fh:
            fh.write(json.dumps(final.model_dump(mode="json"), indent=2, sort_keys=True))
        return final

    def _is_local(self) -> bool:
        proto = self.fs.protocol
        protos = proto if isinstance(proto, tuple) else (proto,)
        return "file" in protos or "local" in protos
