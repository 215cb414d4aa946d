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
