"""The `memsweep` command line: help, version, presets, validate (good and bad specs), argument errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MEMSWEEP = ROOT / ".venv" / "bin" / "memsweep"


def _memsweep(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script (falls back to `python -m sweeps.cli` outside the project venv)."""
    cmd = [str(MEMSWEEP)] if MEMSWEEP.exists() else [sys.executable, "-m", "sweeps.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120, cwd=cwd or ROOT)


def test_help_lists_subcommands():
    r = _memsweep("--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("run", "validate", "presets", "status", "compact", "fit", "report", "demo", "version"):
        assert cmd in r.stdout


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from sweeps.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'ray', 'pyarrow', 'models') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_version():
    from importlib.metadata import version
    r = _memsweep("version")
    assert r.returncode == 0 and r.stdout.strip() == version("memsweep")


def test_presets_and_validate_preset(capsys):
    from sweeps.cli import main
    r = _memsweep("presets")
    assert r.returncode == 0
    assert {line.split()[0] for line in r.stdout.splitlines() if line.strip()} >= {"demo", "paper", "tiny"}
    assert main(["validate", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "4 trials = 2 tail x 2 P x 1 seed" in out and "ok" in out


def test_validate_bad_file_exits_2_without_traceback(tmp_path):
    spec = yaml.safe_load((ROOT / "sweeps" / "presets" / "tiny.yaml").read_text())
    spec["store"] = ""
    spec["trian"] = spec.pop("train")
    spec["grammar"]["m"] = 64  # n_c*m > v**s
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = _memsweep("validate", str(path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert "bad.yaml" in r.stderr
    assert "did you mean 'train'" in r.stderr
    assert "store:" in r.stderr and "impossible grammar" in r.stderr


def test_validate_unknown_name_lists_presets(capsys):
    from sweeps.cli import main
    from sweeps.spec import preset_names
    assert main(["validate", "no-such-thing"]) == 2
    assert f"presets: {', '.join(preset_names())}" in capsys.readouterr().err


def test_status_of_missing_store_is_a_clean_error(tmp_path):
    from sweeps.cli import main
    assert main(["status", str(tmp_path / "nowhere")]) == 2


def test_fit_out_suffix_checked(tmp_path):
    from sweeps.cli import UserError, _write_table
    with pytest.raises(UserError, match=".parquet or .csv"):
        _write_table(None, str(tmp_path / "laws.txt"))


def test_argument_errors_exit_2():
    r = _memsweep("run")
    assert r.returncode == 2 and "SPEC" in r.stderr
    r = _memsweep("fit", "x", "--metric", "nope")
    assert r.returncode == 2


def test_bad_workers_is_a_usage_error_without_traceback():
    r = subprocess.run([MEMSWEEP, "run", "tiny", "--workers", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--workers" in r.stderr and "'0' is not a positive integer" in r.stderr


# ------------------------------------------------------------------------------ errors before work (exit 2)
def _no_traceback(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout


def _make_store(root: Path) -> Path:
    from analysis.store import Store
    with Store(str(root)).writer("s", "s-1") as w:
        w.append("curves", {"step": [10], "copy_frac": [0.5]})
    return root


def test_report_and_fit_on_a_folder_without_a_store_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    _make_store(tmp_path / "run" / "store")
    for folder in ("empty", "notes"):
        r = _memsweep("report", str(tmp_path / folder), "--out", str(tmp_path / "rep"))
        _no_traceback(r)
        assert "is not a store with data" in r.stderr
    r = _memsweep("fit", str(tmp_path / "run"))
    _no_traceback(r)
    assert f"did you mean {str(tmp_path / 'run' / 'store')!r}" in r.stderr
    r = _memsweep("report", str(tmp_path / "run" / "store"), "--out", str(tmp_path / "rep"), "--sweep", "nope")
    _no_traceback(r)
    assert "no sweep 'nope'" in r.stderr and "its sweeps: s" in r.stderr
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("where, needle", [
    ("afile/store", "is a file, not a directory"),
    ("/proc/memsweep/store", "cannot be created in '/proc'"),   # root ignores permission bits; /proc refuses anyway
])
def test_a_store_that_cannot_be_created_exits_2_at_validate_and_run(tmp_path, where, needle):
    (tmp_path / "afile").write_text("")
    store = where if where.startswith("/") else str(tmp_path / where)
    for cmd in ("validate", "run"):
        r = _memsweep(cmd, "tiny", f"store={store}")
        _no_traceback(r)
        assert "store:" in r.stderr and needle in r.stderr
        assert "Ray" not in r.stderr  # refused before Ray started


def test_a_blocked_tune_directory_exits_2_before_work(tmp_path):
    """Tune writes beside the store (<store parent>/tune): a file there is found at validate, not in a mkdir."""
    (tmp_path / "tune").write_text("")
    for cmd in ("validate", "run"):
        r = _memsweep(cmd, "tiny", "--store", str(tmp_path / "store"))
        _no_traceback(r)
        assert "Tune's experiment directory" in r.stderr and "exists and is not a directory" in r.stderr


def _silent_server() -> tuple[int, object]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    import socket
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(8)], daemon=True).start()
    return srv.getsockname()[1], srv


def test_an_s3_store_without_access_exits_2_fast(tmp_path):
    """Offline: an endpoint on 127.0.0.1 that refuses is reported at once; one that never answers is reported
    after MEMSWEEP_ACCESS_TIMEOUT seconds instead of hanging."""
    import os
    import socket
    import time
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "MEMSWEEP_ACCESS_TIMEOUT": "3"}
    env.pop("AWS_ACCESS_KEY_ID", None)
    cmd = [str(MEMSWEEP) if MEMSWEEP.exists() else "memsweep", "validate", "tiny"]
    r = subprocess.run(cmd + [f"store=s3://memsweep-test/x?endpoint_override=127.0.0.1:{port}&scheme=http"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    _no_traceback(r)
    assert "is not accessible" in r.stderr and "credentials" in r.stderr
    silent, srv = _silent_server()
    t0 = time.monotonic()
    r = subprocess.run(cmd + [f"store=s3://memsweep-test/x?endpoint_override=127.0.0.1:{silent}&scheme=http"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    srv.close()
    _no_traceback(r)
    assert "did not answer within 3 s" in r.stderr and time.monotonic() - t0 < 60


@pytest.mark.parametrize("args, needle", [
    (["--theta", "1.5"], "1.5 is outside (0, 1]"),
    (["--theta", "0"], "0 is outside (0, 1]"),
    (["--theta", "half"], "'half' is not a number"),
    (["--out", "laws.xlsx"], "'laws.xlsx' is not a .parquet or .csv file name"),
])
def test_fit_arguments_are_refused_before_fitting(tmp_path, args, needle):
    store = _make_store(tmp_path / "store")
    r = _memsweep("fit", str(store), *args)
    _no_traceback(r)
    assert needle in r.stderr and "onset" not in r.stdout


# ---------------------------------------------------------------------------------------------- overrides
def test_validate_prints_the_effective_spec_with_overrides(tmp_path):
    r = _memsweep("validate", "tiny", "train.steps=300", "axes.P=[4,6]", "--store", str(tmp_path / "s"),
                  "model.width=64")
    assert r.returncode == 0, r.stderr
    assert "train: {steps: 300," in r.stdout and "P: [4, 6]" in r.stdout and "width: 64" in r.stdout
    r = _memsweep("validate", "tiny", "model.widht=64")
    _no_traceback(r)
    assert "did you mean 'width'" in r.stderr and "with overrides model.widht=64" in r.stderr


def test_demo_takes_overrides_and_a_resume_flag(tmp_path):
    from sweeps.cli import _parse
    from sweeps.launch import load as _load, resume_command as _resume_command
    args = _parse(["demo", "--out", str(tmp_path), "train.steps=100", "--workers", "1", "axes.P=[8]"])
    assert args.overrides == ["train.steps=100", "axes.P=[8]"]
    spec = _load(args)
    assert spec.train.steps == 100 and dict(spec.axes)["data.P"] == (8,)
    assert _resume_command(args).endswith("train.steps=100 'axes.P=[8]' --workers 1 --resume")
    with pytest.raises(SystemExit):
        _parse(["status", "x", "train.steps=1"])  # only run, validate and demo take overrides


# ---------------------------------------------------------------------------------------------- Ctrl-C
@pytest.mark.slow
@pytest.mark.ray
def test_ctrl_c_exits_130_and_resume_finishes_the_rest(tmp_path):
    """SIGINT to the driver: trials interrupted (not failed), memsweep's own resume command, exit 130; running
    that command finishes every trial with one curve row per scheduled step; a third run says so in one line."""
    import os
    import shlex
    import signal
    import threading
    import time
    from analysis.store import Store
    from models import eval_schedule
    from sweeps.spec import load_spec

    store = tmp_path / "store"
    args = ["run", "tiny", "train.steps=600", "~stop", "--store", str(store), "--workers", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(MEMSWEEP), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env)
    lines: list[str] = []
    first_done = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if " done " in line:
                first_done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first_done.wait(240), "".join(lines) + proc.stderr.read()
    for _ in range(120):     # Ctrl-C once the next trial has written rows: it is then interrupted, not unstarted
        time.sleep(0.5)
        if "running" in Store(str(store)).read("trials", columns=["status"]).column("status").to_pylist():
            break
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(120) == 130, "".join(lines) + err
    reader.join(10)
    out = "".join(lines)
    assert "interrupted" in out and "failed: " not in out and "Traceback" not in out + err
    assert "Tuner.restore" not in out + err
    # interrupted everywhere: the store, `memsweep status`, the closing lines, the live view at the store's step
    stored = {t["trial_id"]: t["status"] for t in Store(str(store)).read("trials").to_pylist()}
    assert "interrupted" in stored.values() and set(stored.values()) <= {"done", "stopped", "interrupted"}, stored
    status = subprocess.run([str(MEMSWEEP), "status", str(store)], capture_output=True, text=True, timeout=120)
    assert "interrupted: " in status.stdout and "failed" not in status.stdout, status.stdout
    n_stopped = sum(s == "interrupted" for s in stored.values())
    assert f"{n_stopped} interrupted, " in next(ln for ln in lines if " done, " in ln and "wall time" in ln)
    assert f"{n_stopped} interrupted, " in next(ln for ln in lines if ": interrupted: " in ln)
    last = {}
    for c in Store(str(store)).read("curves", columns=["trial_id", "step"]).to_pylist():
        last[c["trial_id"]] = max(last.get(c["trial_id"], 0), c["step"])
    for ln in lines:
        if "] interrupted " in ln:
            tid, step = ln.split()[2], int(ln.split("step=")[1].split()[0])
            assert step == last[tid], (ln, last)
    resume = next(line.split("resume with: ", 1)[1] for line in lines if line.startswith("resume with: "))
    assert shlex.split(resume)[1:] == [*args, "--resume"]
    r = subprocess.run([str(MEMSWEEP), *shlex.split(resume)[1:]], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    spec = load_spec("tiny", ["train.steps=600", "~stop", f"store={store}"])
    trials = {t["trial_id"]: t["status"] for t in Store(str(store)).read("trials").to_pylist()}
    curves = Store(str(store)).read("curves", columns=["trial_id", "step"]).to_pylist()
    want = eval_schedule(600, spec.train.evals_per_decade, spec.train.first_eval)
    for t in spec.trials():
        assert trials[t.trial_id] == "done"
        assert sorted(c["step"] for c in curves if c["trial_id"] == t.trial_id) == want
    r = subprocess.run([str(MEMSWEEP), *shlex.split(resume)[1:]], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.strip().splitlines() == [
        f"tiny: all 4 trials are already finished in {store}; nothing to resume"], r.stdout


def test_run_sweep_refuses_a_blocked_tune_directory_before_ray(tmp_path):
    """The API checks what the CLI checks: run_sweep raises the SpecError before it starts anything."""
    from sweeps.runner import run_sweep
    from sweeps.spec import SpecError, load_spec
    (tmp_path / "tune").write_text("")
    with pytest.raises(SpecError, match="Tune's experiment directory"):
        run_sweep(load_spec("tiny", [f"store={tmp_path / 'store'}"]), workers=1, progress=False)
    assert not (tmp_path / "store").exists()
