"""cluster.yaml: valid for Ray's cluster launcher (checked offline against Ray's own schema), installs this
project on every node, has GPU worker nodes, and is locked down: token auth, dashboard on localhost, SSH only
through the user's security group, S3 access to the store's bucket only, EC2 rights only on the cluster's tagged
instances, IMDSv2 required, torch pinned."""
from __future__ import annotations

import json
import re
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
    # torch pinned to the version this checkout is tested with (the Makefile's), from PyPI: its CUDA build
    pin = re.search(r"torch==[0-9.]+", (ROOT / "Makefile").read_text()).group(0)
    assert re.search(rf"pip install -q {re.escape(pin)} --index-url https://pypi\.org/simple\s", setup + "\n"), setup
    assert f"ray[default,tune]=={ray.__version__}" in setup           # same Ray as here
    mounts = cluster.get("file_mounts", {})
    assert mounts.get("~/memsweep") == "." or "git clone" in setup
    assert "MEMSWEEP_STORE=s3://" in setup


def _start_commands(cluster: dict) -> list[str]:
    return cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]


def test_ray_token_authentication_on_every_node(cluster):
    starts = [c for c in _start_commands(cluster) if " start " in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    assert "export RAY_AUTH_MODE=token" in "\n".join(cluster["setup_commands"])  # drivers run via `ray exec`
    # the token is the user's secret, copied from their machine to where Ray reads it; never from the repository
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    header = (ROOT / "cluster.yaml").read_text().split("cluster_name:")[0]
    assert "ray get-auth-token --generate" in header and "RAY_AUTH_MODE=token" in header


def test_dashboard_only_on_localhost(cluster):
    (head_start,) = [c for c in cluster["head_start_ray_commands"] if "--head" in c]
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "ray dashboard cluster.yaml" in (ROOT / "cluster.yaml").read_text()


def test_ssh_only_through_the_users_security_group(cluster):
    """Ray's default security group opens SSH to 0.0.0.0/0; a node type with SecurityGroupIds does not get it."""
    for name, t in cluster["available_node_types"].items():
        assert t["node_config"].get("SecurityGroupIds") == ["sg-CHANGE-ME"], name
    setup = (ROOT / "cluster" / "aws-setup.sh").read_text()
    assert '--port 22 --cidr "$CIDR"' in setup and "0.0.0.0/0" not in setup


def _bucket(cluster: dict) -> str:
    setup = "\n".join(cluster["setup_commands"])
    return setup.split("MEMSWEEP_STORE=s3://", 1)[1].split("/", 1)[0]


@pytest.mark.parametrize("node", ["head", "worker"])
def test_s3_access_is_scoped_to_the_store_bucket(cluster, node):
    bucket = _bucket(cluster)
    name = f"memsweep-{node}"
    node_type = cluster["head_node_type"] if node == "head" else next(
        n for n in cluster["available_node_types"] if n != cluster["head_node_type"])
    assert cluster["available_node_types"][node_type]["node_config"]["IamInstanceProfile"] == {"Name": name}
    policy = json.loads((ROOT / "cluster" / f"iam-{node}-policy.json").read_text())
    s3 = [st for st in policy["Statement"] if any(a.startswith("s3:") for a in _list(st["Action"]))]
    assert s3 and all(st["Effect"] == "Allow" for st in policy["Statement"])
    for st in s3:
        assert all(a.startswith("s3:") and "*" not in a for a in _list(st["Action"])), st
        assert set(_list(st["Resource"])) <= {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}, st
    others = [st for st in policy["Statement"] if st not in s3]
    if node == "worker":
        assert others == []
    else:  # the head launches workers: EC2, and passing only the worker's role
        passes = [st for st in others if "iam:PassRole" in _list(st["Action"])]
        assert len(passes) == 1 and all(r.endswith("/memsweep-worker") for r in _list(passes[0]["Resource"]))
        assert all(a.startswith(("ec2:", "iam:PassRole", "iam:GetInstanceProfile")) for st in others
                   for a in _list(st["Action"]))


def test_imdsv2_is_required_on_every_node(cluster):
    for name, t in cluster["available_node_types"].items():
        assert t["node_config"].get("MetadataOptions", {}).get("HttpTokens") == "required", name


def test_head_may_only_touch_the_clusters_tagged_instances(cluster):
    """Every EC2 action that launches, changes or ends an instance is conditioned on the tag Ray puts on this
    cluster's nodes (ray-cluster-name=<cluster_name>); a launch must also require IMDSv2; only Describe* (which
    cannot be scoped) is on every resource."""
    from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME

    policy = json.loads((ROOT / "cluster" / "iam-head-policy.json").read_text())
    ec2 = [st for st in policy["Statement"] if any(a.startswith("ec2:") for a in _list(st["Action"]))]
    tag = {f"aws:RequestTag/{TAG_RAY_CLUSTER_NAME}": cluster["cluster_name"]}
    own = {f"ec2:ResourceTag/{TAG_RAY_CLUSTER_NAME}": cluster["cluster_name"]}
    for st in ec2:
        actions, resources = _list(st["Action"]), _list(st["Resource"])
        cond = st.get("Condition", {}).get("StringEquals", {})
        if "*" in resources:
            assert actions == ["ec2:Describe*"], st
            continue
        assert all(r.startswith("arn:aws:ec2:") for r in resources), st
        instances = [r for r in resources if ":instance/" in r]
        if "ec2:RunInstances" in actions and instances:
            assert cond.items() >= {**tag, "ec2:MetadataHttpTokens": "required"}.items(), st
        elif "ec2:RunInstances" in actions:      # what a launch uses besides the instance itself
            assert not instances and set(actions) == {"ec2:RunInstances"}, st
        elif set(actions) <= {"ec2:CreateTags"} and cond.get("ec2:CreateAction") == "RunInstances":
            pass                                   # tags written by the launch itself (already conditioned)
        else:
            assert cond.items() >= own.items(), st
    changing = {a for st in ec2 for a in _list(st["Action"])}
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:StopInstances", "ec2:StartInstances"} <= changing


def _list(x) -> list:
    return x if isinstance(x, list) else [x]


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
