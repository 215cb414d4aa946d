"""Shared fixtures. The Ray cluster is session-scoped and lazy: only tests that request `ray_cluster` pay for it."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict]:
    """One embedded Ray instance (2 CPUs, no dashboard) for the whole session; shut down at the end."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="rtest", dir="/tmp")  # short: Ray's socket paths have a length limit
    ctx = ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
                   configure_logging=False)
    try:
        yield {"address": ctx.address_info.get("address"), "temp_dir": temp_dir}
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
