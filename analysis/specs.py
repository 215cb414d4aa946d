"""Trials of one sweep planned from different effective specs (the trials table's `spec`, written by the runner:
`sweeps.spec.storage.spec_key`) are kept apart by every analysis unless pooled on purpose (`--pool-specs`).

The one home of that rule: `analysis.onset.analysed` applies it to the trials `fit` and `report` read. A sweep
whose trials carry more than one key has each trial relabeled `sweep` = `<sweep>@<key>` and `tail` (the group label
that laws, order, slop and the figures pool by, with L) = `<tail> (<sweep>@<key>)`, so no table pools them.
Trials of a store written before the column (null `spec`) count as one unknown spec, unless no recorded setting
tells them from exactly one known key of their sweep (an older store resumed with the same spec): then as that key.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa

from analysis.schema import CFG_PREFIX

SPEC_COLUMN = "spec"
UNKNOWN = "unknown"      # the key of trials written before the trials table recorded their spec
SHOWN_SETTINGS = 6       # settings a note names before "and N more"


def spec_label(sweep: str, key: str | None) -> str:
    """`<sweep>@<key>`: a sweep's trials of one effective spec, as tables name them when kept apart."""
    return f"{sweep}@{key or UNKNOWN}"


def base_tail(label: Any) -> str:
    """The tail label without the ` (<sweep>@<key>)` a kept-apart spec adds (`uniform (tiny@1a2b3c4d)` ->
    `uniform`)."""
    return str(label).split(" (", 1)[0]


def _keys(trials: pa.Table) -> list[str | None]:
    return (trials.column(SPEC_COLUMN).to_pylist() if SPEC_COLUMN in trials.column_names
            else [None] * trials.num_rows)


def spec_groups(trials: pa.Table) -> dict[str, dict[str | None, list[int]]]:
    """{sweep: {spec key (None: unknown): trials-row indices}} for the sweeps whose trials carry more than one key."""
    sweeps = trials.column("sweep").to_pylist() if "sweep" in trials.column_names else [""] * trials.num_rows
    out: dict[str, dict[str | None, list[int]]] = {}
    for i, (sw, key) in enumerate(zip(sweeps, _keys(trials))):
        out.setdefault(sw, {}).setdefault(key, []).append(i)
    return {sw: groups for sw, groups in out.items() if len(groups) > 1}


def differing_settings(trials: pa.Table, groups: dict[str | None, list[int]]) -> list[str]:
    """`name: a / b` for each recorded setting (`cfg.*` column) that is one value within each key's trials and not
    the same across keys: the fixed settings that changed (axis settings vary within a key, so they are not
    named)."""
    out = []
    for name in [c for c in trials.column_names if c.startswith(CFG_PREFIX)]:
        values = trials.column(name).to_pylist()
        per_key = [{repr(values[i]) for i in rows} for rows in groups.values()]
        if all(len(v) == 1 for v in per_key) and len({next(iter(v)) for v in per_key}) > 1:
            out.append(f"{name[len(CFG_PREFIX):]}: {' / '.join(next(iter(v)) for v in per_key)}")
    return out


def _note(sweep: str, trials: pa.Table, groups: dict[str | None, list[int]], pool: bool) -> str:
    """One sentence: the sweep, its keys with trial counts, the settings that differ, where the specs are."""
    copies = _distinct(trials, "spec_copy", groups)
    parts = [f"{spec_label(sweep, k)} ({len(rows)} trial(s)"
             + (", written before trials recorded their spec" if k is None else "") + ")" for k, rows in groups.items()]
    diff = differing_settings(trials, groups)
    shown = "; ".join(diff[:SHOWN_SETTINGS]) + (f"; and {len(diff) - SHOWN_SETTINGS} more" if len(diff) >
                                                 SHOWN_SETTINGS else "")
    what = (f"they differ in {shown}" if diff else "no fixed setting in the trials table tells them apart (they may "
            "differ in which settings are axes; trials of an unknown spec may not differ at all)")
    files = [f"_specs/{sweep}-{c}.yaml" for c in copies if c]
    where = f"; their effective specs are in the store's {', '.join(files)}" if files else ""
    how = ("pooled as asked (--pool-specs)" if pool else
           "kept apart in every table and law (--pool-specs pools them)")
    return (f"sweep {sweep!r} holds trials of {len(groups)} effective specs, {how}: {', '.join(parts)}; "
            f"{what}{where}")


def _distinct(trials: pa.Table, column: str, groups: dict[str | None, list[int]]) -> list[str | None]:
    """The distinct values of `column` over the trials of the groups, in first-seen order."""
    if column not in trials.column_names:
        return []
    values = trials.column(column).to_pylist()
    return list(dict.fromkeys(values[i] for rows in groups.values() for i in rows))


def _adopt_unknown(sweep: str, trials: pa.Table, groups: dict[str | None, list[int]]
                   ) -> tuple[dict[str | None, list[int]], str | None]:
    """Trials of an unknown spec (written before the column) join the one known key from which no recorded setting
    (`cfg.*`: every per-trial value) tells them apart, e.g. an older store resumed with the same spec; (the groups,
    a note saying so, or None when none or several keys match)."""
    if None not in groups:
        return groups, None
    match = [k for k in groups if k is not None and not differing_settings(trials, {None: groups[None], k: groups[k]})]
    if len(match) != 1:
        return groups, None
    out = {k: rows for k, rows in groups.items() if k is not None}
    out[match[0]] = sorted(out[match[0]] + groups[None])
    return out, (f"sweep {sweep!r}: {len(groups[None])} trial(s) written before trials recorded their spec count as "
                 f"{spec_label(sweep, match[0])}: no recorded setting tells them apart")


def split_specs(trials: pa.Table, pool: bool = False) -> tuple[pa.Table, list[str]]:
    """(the trials with each sweep of several spec keys relabeled per key, unless `pool`; one note per such sweep
    naming its keys, trial counts and the settings that differ). Trials of an unknown spec join the one known key
    they cannot be told from (`_adopt_unknown`), else they are a spec of their own."""
    notes: list[str] = []
    label: dict[int, str] = {}
    for sw, groups in spec_groups(trials).items():
        groups, adopted = _adopt_unknown(sw, trials, groups)
        notes += [adopted] if adopted else []
        if len(groups) > 1:
            notes.append(_note(sw, trials, groups, pool))
            if not pool:
                label.update({i: spec_label(sw, key) for key, rows in groups.items() for i in rows})
    out = trials
    if label and "sweep" in out.column_names:
        sweeps = [label.get(i, v) for i, v in enumerate(out.column("sweep").to_pylist())]
        out = out.set_column(out.column_names.index("sweep"), "sweep", pa.array(sweeps, pa.string()))
    if label and "tail" in out.column_names:
        tails = [f"{v} ({label[i]})" if i in label else v for i, v in enumerate(out.column("tail").to_pylist())]
        out = out.set_column(out.column_names.index("tail"), "tail", pa.array(tails, pa.string()))
    return out, notes
