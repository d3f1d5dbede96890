"""Names of the ModelRollout API: group, version, plural, annotations, the CRD file."""

from __future__ import annotations

from pathlib import Path

GROUP = "finserve.dev"
VERSION = "v1alpha1"
PLURAL = "modelrollouts"
KIND = "ModelRollout"
SHORT_NAME = "mro"
API_VERSION = f"{GROUP}/{VERSION}"

# Manual control: set `finserve.dev/<command>` to any new value (the CLI writes a timestamp).
# A command runs once per value: the handled value is kept in status.handledCommands.
COMMAND_PREFIX = f"{GROUP}/"
# retry starts a Failed or Aborted rollout again from its first step (`finserve rollout retry`).
COMMANDS = ("abort", "promote", "pause", "resume", "retry")

# kopf's own bookkeeping (handler progress, last handled spec, finalizer) under a separate prefix,
# so the object's status holds only what the rollout reports.
KOPF_PREFIX = f"kopf.{GROUP}"
FINALIZER = f"{GROUP}/operator"

# The CRD lives in the repository (manifests/ is not inside the Python package).
CRD_PATH = Path(__file__).resolve().parent.parent / "manifests" / "crds" / f"{PLURAL}.{GROUP}.yaml"
