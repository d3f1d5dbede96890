"""A throwaway local Ray cluster with Ray Serve started on free ports, for tests that need real Ray Serve
without the whole finserve app (its own temp dir, so parallel clones and leftovers never meet)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from netutil import free_port


@contextmanager
def serve_cluster(grpc_options: dict[str, Any] | None = None) -> Iterator[None]:
    """ray.init (2 CPUs, no dashboard) + serve.start on a free loopback HTTP port; both shut down after."""
    import ray
    from ray import serve

    from finserve.serving.ray_start import descendant_pids, start_with_retry, stop_failed_start

    before = descendant_pids()
    # As `finserve up` starts it: a loaded CI machine sometimes misses Ray's fixed 30 s raylet wait once.
    start_with_retry(
        lambda: ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=tempfile.mkdtemp(prefix="fsray-", dir="/tmp"),
        ),
        lambda: (ray.shutdown(), stop_failed_start(keep=before)),
        print,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()}, grpc_options=grpc_options)
        yield
    finally:
        serve.shutdown()
        ray.shutdown()
