"""Where a sweep writes: the store URI (resolved and checked statically), the directories a run will create, and
a bounded-time access probe of remote stores, so every one of these problems is reported before work starts.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

URI_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
ACCESS_TIMEOUT_S = 20.0  # a remote store that has not answered by then is reported unreachable


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser().absolute()


def resolve_store(uri: str) -> str:
    """Local paths (and file:// URIs) made absolute against the CWD; other URIs unchanged."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        if scheme.lower() == "file":
            return "file://" + str(Path(rest).expanduser().absolute()) if not rest.startswith("/") else uri
        return uri
    return str(Path(uri).expanduser().absolute())


def check_store(uri: Any, path: str = "store") -> list[str]:
    """Problems with a store URI: empty, unsupported scheme, or a local directory that cannot be created."""
    if not isinstance(uri, str) or not uri.strip():
        return [f"{path}: {uri!r} is missing or empty; give a local path or a URI ({', '.join(URI_SCHEMES)})"]
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        if scheme.lower() not in URI_SCHEMES:
            return [f"{path}: {uri!r} has unsupported scheme '{scheme}'; valid schemes: {', '.join(URI_SCHEMES)} "
                    "(or a plain local path)"]
        if scheme.lower() != "file":
            return [] if rest.split("?", 1)[0].strip("/") else [f"{path}: {uri!r} names no bucket or path"]
    problem = creatable_dir(local_path(uri))
    return [f"{path}: {problem}"] if problem else []


def creatable_dir(p: Path) -> str | None:
    """Why directory `p` cannot be made (or written) by this process, or None when it can."""
    p = p.expanduser().absolute()
    if p.exists():
        if not p.is_dir():
            return f"{str(p)!r} exists and is not a directory"
        if not os.access(p, os.W_OK | os.X_OK):
            return f"{str(p)!r} is not writable"
        return _probe(p, p)
    parent = p.parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if parent.is_symlink() and not parent.exists():
        return f"{str(p)!r} cannot be created: {str(parent)!r} is a dangling symbolic link"
    if not parent.is_dir():
        return f"{str(p)!r} cannot be created: {str(parent)!r} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{str(p)!r} cannot be created: {str(parent)!r} is not writable"
    return _probe(p, parent)


def _probe(p: Path, parent: Path) -> str | None:
    """Make and remove an empty directory in `parent`: permission bits do not tell everything (root ignores
    them, read-only mounts and pseudo file systems such as /proc refuse anyway)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".memsweep-probe-", dir=parent))
    except OSError as e:
        return f"{str(p)!r} cannot be created in {str(parent)!r}: {e.strerror or e}"
    return None


def check_run_paths(spec: Any, tune_dir: str, journal: str | None) -> list[str]:
    """Problems with what a run creates besides the store: Tune's experiment directory and the Optuna journal."""
    problems = []
    if is_local(tune_dir):
        why = creatable_dir(local_path(tune_dir))
        problems += [f"Tune's experiment directory: {why}"] if why else []
    if journal:
        why = creatable_dir(Path(journal).parent)
        problems += [f"optuna.journal: the journal's folder {why}"] if why else []
    return problems


# ------------------------------------------------------------------------------------------- remote access
_PROBE = r"""
import sys
import pyarrow.fs as fs
uri = sys.argv[1]
try:
    if uri.startswith("s3://"):
        from urllib.parse import urlsplit, parse_qs
        parts = urlsplit(uri)
        opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        kwargs = {"connect_timeout": 5, "request_timeout": 10,
                  "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=2)}
        for key in ("region", "endpoint_override", "scheme"):
            if key in opts:
                kwargs[key] = opts[key]
        filesystem, path = fs.S3FileSystem(**kwargs), parts.netloc + parts.path
    else:
        filesystem, path = fs.FileSystem.from_uri(uri)
    bucket = path.strip("/").split("/", 1)[0]
    info = filesystem.get_file_info(bucket)
    if info.type == fs.FileType.NotFound:
        print(f"bucket {bucket!r} does not exist or is not visible with these credentials")
        sys.exit(3)
    filesystem.get_file_info(fs.FileSelector(path.rstrip("/"), allow_not_found=True))
except Exception as e:
    print(f"{type(e).__name__}: {' '.join(str(e).split())}")
    sys.exit(3)
"""


def check_access(uri: str, timeout: float = ACCESS_TIMEOUT_S) -> list[str]:
    """Problems reaching a remote store (credentials, bucket, network), probed by listing it in a child process
    that is killed after `timeout` s: an unreachable endpoint or a credential lookup that hangs cannot stall the
    command. Local stores are checked statically by check_store."""
    if is_local(uri):
        return []
    timeout = float(os.environ.get("MEMSWEEP_ACCESS_TIMEOUT", timeout))
    hint = ("check the credentials (for S3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance "
            "role), the bucket name and the network")
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE, uri], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [f"store: {uri!r} did not answer within {timeout:g} s; {hint}"]
    if r.returncode == 0:
        return []
    why = (r.stdout.strip() or r.stderr.strip().splitlines()[-1:] or ["unknown error"])
    why = why if isinstance(why, str) else why[0]
    return [f"store: {uri!r} is not accessible ({why}); {hint}"]


# ------------------------------------------------------------------------------------------ the spec copy
SPECS_DIR = "_specs"  # under the store root; the leading '_' makes Arrow's dataset discovery skip it


def copy_digest(spec: Any) -> str:
    """8 hex digits of the effective spec's YAML: names its copy (`spec_copy_uri`) and each trial's `spec_copy`."""
    import hashlib

    return hashlib.sha1(spec.to_yaml().encode()).hexdigest()[:8]


def spec_key(spec: Any) -> str:
    """8 hex digits of what a sweep's trials are, apart from which grid points it runs: every per-trial setting
    (each key of each per-trial section, defaults resolved, and the top-level tail and seed) the axes do not set,
    and the axes' names, not their values; name, description, store and the per-sweep settings (mode, resources,
    pack, optuna) are left out. So a resume that adds axis values keeps the key and one that changes a fixed
    setting (lr, steps, width, eval) changes it: the trials table's `spec`, by which `fit` and `report` keep
    trials of one sweep apart (analysis.specs)."""
    import dataclasses
    import hashlib
    import json

    from sweeps.spec.fields import to_plain
    from sweeps.spec.sweep import PER_TRIAL_VALUES

    axes = set(spec.axis_names)
    what: dict[str, Any] = {"axes": sorted(axes)}
    for f in dataclasses.fields(spec):
        if f.metadata.get("per_trial"):
            fixed = getattr(spec, f.name)
            what[f.name] = {k: to_plain(getattr(fixed, k)) for k in fixed.section.keys if f"{f.name}.{k}" not in axes}
        elif f.name in PER_TRIAL_VALUES and f.name not in axes:
            what[f.name] = to_plain(getattr(spec, f.name))
    blob = json.dumps(what, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def spec_copy_uri(spec: Any) -> str:
    """Where the effective spec of a sweep is kept: `<store>/_specs/<name>-<copy_digest>.yaml`, one file per
    distinct effective spec the sweep ran with (overrides included)."""
    return f"{str(spec.store).rstrip('/')}/{SPECS_DIR}/{spec.name}-{copy_digest(spec)}.yaml"


def record_spec(spec: Any) -> str:
    """Write the effective spec (spec.to_yaml()) next to the sweep's data, once; returns its URI."""
    import pyarrow.fs as pafs

    from analysis.store import check_inside, put_whole

    uri = spec_copy_uri(spec)
    local = is_local(uri)
    if local:
        fs, path = pafs.LocalFileSystem(), str(local_path(uri))
        check_inside(str(local_path(spec.store)), path)       # a symlink planted in a shared store: refused
    else:
        fs, path = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if local:
            check_inside(str(local_path(spec.store)), path.rsplit("/", 1)[0])
        header = f"# effective spec of sweep {spec.name!r} (source: {spec.source or 'a dict'})\n"
        put_whole(fs, path, lambda out: out.write((header + spec.to_yaml()).encode()), atomic_rename=local)
    return uri


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of nested mappings (lists and scalars are leaves)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def spec_changes(spec: Any) -> tuple[str | None, list[str]]:
    """(the sweep's latest earlier effective spec in this store, one `key: old -> new` per setting the current spec
    changes against it); (None, []) when the sweep has no other recorded spec. A sweep rerun or resumed with an
    edited spec trains new trial ids beside the old ones: the caller says so."""
    import re

    import pyarrow.fs as pafs

    from sweeps.spec.yamlsafe import load_yaml

    current = spec_copy_uri(spec)
    folder = current.rsplit("/", 1)[0]
    fs, path = (pafs.LocalFileSystem(), str(local_path(folder))) if is_local(folder) else \
        pafs.FileSystem.from_uri(folder)
    mine = re.compile(re.escape(spec.name) + r"-[0-9a-f]{8}\.yaml$")
    earlier = [i for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
               if i.type == pafs.FileType.File and mine.match(i.base_name) and i.base_name != current.rsplit("/", 1)[1]]
    if not earlier:
        return None, []
    last = max(earlier, key=lambda i: i.mtime_ns or 0)
    try:
        with fs.open_input_stream(last.path) as f:
            old = _flat(load_yaml(f.read().decode()) or {})
    except Exception as e:  # noqa: BLE001 - an unreadable copy: say that much
        return last.path, [f"(cannot read it: {type(e).__name__}: {e})"]
    new = _flat(spec.to_dict())
    return last.path, [f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in sorted(set(old) | set(new))
                       if old.get(k) != new.get(k)]
