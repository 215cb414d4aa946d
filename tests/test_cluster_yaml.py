"""cluster.yaml: valid for Ray's cluster launcher (checked offline against Ray's own schema), installs this
project on every node, and has GPU worker nodes."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
GPU_FAMILIES = ("g4dn.", "g5.", "g6.", "g6e.", "p3.", "p4d.", "p4de.", "p5.")


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_valid_against_ray_schema(cluster):
    assert SCHEMA.is_file(), SCHEMA
    jsonschema.validate(cluster, json.loads(SCHEMA.read_text()))


def test_ray_launcher_accepts_it(cluster):
    """Ray's own fill-in-defaults + validation, as `ray up` does before touching the cloud (no network)."""
    from ray.autoscaler._private.util import prepare_config, validate_config
    validate_config(prepare_config(json.loads(json.dumps(cluster))))


def test_setup_installs_this_project(cluster):
    setup = "\n".join(cluster["setup_commands"])
    assert "pip install" in setup and "-e ~/memsweep" in setup
    assert "pip install -q torch" in setup and "torch==2.13.0" not in setup  # PyPI's CUDA build, not the CPU pin
    assert f"ray[default,tune]=={ray.__version__}" in setup           # same Ray as here
    mounts = cluster.get("file_mounts", {})
    assert mounts.get("~/memsweep") == "." or "git clone" in setup
    assert "MEMSWEEP_STORE=s3://" in setup


def test_gpu_workers_autoscale(cluster):
    types = cluster["available_node_types"]
    head = cluster["head_node_type"]
    assert head in types
    workers = {name: t for name, t in types.items() if name != head}
    assert workers
    for t in workers.values():
        assert t["resources"].get("GPU", 0) >= 1
        assert t["node_config"]["InstanceType"].startswith(GPU_FAMILIES)
        assert t["min_workers"] == 0 and 1 <= t["max_workers"] <= cluster["max_workers"]
    assert types[head]["resources"].get("GPU", 0) == 0


def test_paper_preset_fits_a_worker(cluster):
    """The paper preset's per-trial resources pack whole trials onto one GPU worker."""
    from sweeps.spec import load_spec
    res = load_spec("paper").resources
    worker = next(t for n, t in cluster["available_node_types"].items() if n != cluster["head_node_type"])
    per_node = min(worker["resources"]["GPU"] / res["gpu"], worker["resources"]["CPU"] / res["cpu"])
    assert per_node >= 1 / res["gpu"] - 1e-9  # CPU does not limit packing below the GPU share
