"""docs/findings.md against the committed per-trial files: refit.py recomputes every pooled file of each sweep
folder (regime, tails, study, depth) from its per-trial CSVs (and must agree with the files made from the store),
and every table the page quotes between `<!-- table ... -->` markers is exactly what tables.py renders from those
refit files."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT / "docs" / "findings"
SWEEPS = ("regime", "tails", "study", "depth")


def _script(name: str):
    sys.path.insert(0, str(FINDINGS))
    spec = importlib.util.spec_from_file_location(f"findings_{name}", FINDINGS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_page_tables_are_the_refit_of_the_committed_rows(tmp_path, capsys):
    present = [s for s in SWEEPS if (FINDINGS / s / "onsets_trials.csv").exists()]
    assert "regime" in present, "docs/findings/regime lacks its committed per-trial rows (run docs/findings/run.sh)"
    refit, tables = _script("refit"), _script("tables")
    assert refit.main(str(FINDINGS), str(tmp_path / "refit"), present) == 0, capsys.readouterr().out
    said = capsys.readouterr().out
    assert "DIFFERS" not in said and said.count("refit agrees") >= 6, said
    page = tmp_path / "findings.md"
    shutil.copy(ROOT / "docs" / "findings.md", page)
    blocks = tables.BLOCK.findall(page.read_text())
    assert {b[1].split("/")[0] for b in blocks} >= set(present), "the page quotes no table of a committed sweep"
    assert tables.check(tmp_path / "refit", page) == []
    # the check can fail: a changed number in a refit file changes the page's table
    import pandas as pd

    first = blocks[0][1]
    rows = tmp_path / "refit" / first.split("/")[0] / f"{first.split('/')[1]}.csv"
    frame = pd.read_csv(rows)
    col = next(c for c in frame.columns if pd.api.types.is_integer_dtype(frame[c]))
    frame.loc[0, col] += 1
    frame.to_csv(rows, index=False)
    assert first in tables.check(tmp_path / "refit", page)
