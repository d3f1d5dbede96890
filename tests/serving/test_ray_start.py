"""The retry around Ray's node start: only Ray's fixed startup waits earn a second start.

Ray's real startup timeout cannot be provoked on demand, so ``init`` here is a plain function that raises the
exception texts Ray raises (ray/_private/node.py and services.py); the decision logic is what is under test.
"""

from __future__ import annotations

import pytest

from finserve.serving.ray_start import is_startup_timeout, start_with_retry

RAYLET_TIMEOUT = Exception(
    "The current node timed out during startup. This could happen because some of the "
    "raylet failed to startup or the GCS has become overloaded."
)
GCS_PORT_TIMEOUT = RuntimeError(
    "Timed out waiting for file /tmp/ray/session_x/gcs_server_port_1. The file "
    "is not created after 60 seconds"
)


class Starts:
    """An init that fails with the given exceptions in turn, then succeeds; counts shutdowns and messages."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.inits = 0
        self.shutdowns = 0
        self.said: list[str] = []

    def init(self) -> None:
        self.inits += 1
        if self.failures:
            raise self.failures.pop(0)

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.mark.parametrize("exc", [RAYLET_TIMEOUT, GCS_PORT_TIMEOUT])
def test_one_startup_timeout_is_retried_and_said(exc: BaseException) -> None:
    s = Starts(exc)
    start_with_retry(s.init, s.shutdown, s.said.append)
    assert (s.inits, s.shutdowns) == (2, 1)
    assert len(s.said) == 1 and "once more" in s.said[0] and str(exc)[:40] in s.said[0]


def test_the_same_timeout_twice_is_raised() -> None:
    s = Starts(RAYLET_TIMEOUT, RAYLET_TIMEOUT)
    with pytest.raises(Exception, match="timed out during startup"):
        start_with_retry(s.init, s.shutdown, s.said.append)
    assert s.inits == 2


def test_any_other_failure_is_raised_at_once() -> None:
    s = Starts(ValueError("num_cpus must be positive"))
    with pytest.raises(ValueError):
        start_with_retry(s.init, s.shutdown, s.said.append)
    assert (s.inits, s.shutdowns, s.said) == (1, 0, [])


def test_a_clean_start_is_started_once() -> None:
    s = Starts()
    start_with_retry(s.init, s.shutdown, s.said.append)
    assert (s.inits, s.shutdowns, s.said) == (1, 0, [])


def test_only_rays_timeout_texts_count() -> None:
    assert is_startup_timeout(RAYLET_TIMEOUT) and is_startup_timeout(GCS_PORT_TIMEOUT)
    assert not is_startup_timeout(TimeoutError("upstream timed out"))


def test_a_failed_starts_daemons_are_stopped_and_nothing_else(tmp_path) -> None:
    """Real child processes: one run from a ray package folder (as Ray's helpers are), one that is not Ray."""
    import subprocess
    import sys

    from finserve.serving.ray_start import descendant_pids, stop_failed_start

    # Whatever this test process ran before (a session's Ray, if the suite started one) must survive.
    before = descendant_pids()
    helper = tmp_path / "ray" / "_private" / "log_monitor.py"
    helper.parent.mkdir(parents=True)
    helper.write_text("import time\ntime.sleep(120)\n")
    ray_like = subprocess.Popen([sys.executable, str(helper)])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    older_ray_like = subprocess.Popen([sys.executable, str(helper)])
    try:
        stopped = stop_failed_start(keep=before | {older_ray_like.pid}, timeout_s=5)
        assert stopped == [ray_like.pid]
        assert ray_like.wait(timeout=5) is not None
        assert other.poll() is None and older_ray_like.poll() is None
    finally:
        for proc in (ray_like, other, older_ray_like):
            proc.kill()
            proc.wait()


def test_in_fresh_process_runs_elsewhere_and_returns_the_result() -> None:
    import os

    from finserve.serving.ray_start import in_fresh_process

    assert in_fresh_process(os.getpid) != os.getpid()
    assert in_fresh_process(divmod, 17, 5) == (3, 2)


def test_in_fresh_process_leaves_what_the_work_imports_in_the_child() -> None:
    """What the index build loads (gRPC, torch) must not end up in the process that starts Ray next."""
    import sys

    from finserve.serving.ray_start import in_fresh_process

    name = "colorsys"  # dropped from this process first, whatever imported it before
    sys.modules.pop(name, None)
    assert name in in_fresh_process(_import_and_list, name)
    assert name not in sys.modules


def test_in_fresh_process_raises_the_childs_exception_here() -> None:
    from finserve.serving.ray_start import in_fresh_process

    with pytest.raises(ValueError, match="invalid literal"):
        in_fresh_process(int, "not a number")


def _import_and_list(name: str) -> list[str]:
    import importlib
    import sys

    importlib.import_module(name)
    return sorted(sys.modules)
