"""`finserve drain` (the RayService head's preStop hook) where no cluster answers: bounded, exit 2, one line naming
the cluster, no traceback. (Joining a real stack and draining it: tests/serving/test_e2e_stack.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from netutil import free_port


def test_drain_without_a_cluster_says_so_and_exits_2(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FINSERVE_DATA_DIR": str(tmp_path),  # no `finserve up` recorded here
        "FINSERVE_DRAIN__GRACE_S": "1",
        "FINSERVE_DRAIN__MIN_NOT_READY_S": "0",
    }
    env.pop("RAY_ADDRESS", None)
    address = f"127.0.0.1:{free_port()}"  # nothing listens: Ray retries until the command's own bound
    done = subprocess.run(
        [str(Path(sys.executable).parent / "finserve"), "drain", "--address", address, "--join-timeout", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert f"Ray cluster at {address} (--address)" in out, out
    assert "Traceback" not in out, out
