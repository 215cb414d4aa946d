"""A rich live view of a sweep, replacing Ray Tune's console output.

`LiveProgress` is a `ray.tune.Callback`: Tune calls it on the driver as trials start, report, finish or fail.
It counts trials, not Tune trials: a pack (sweeps.pack_trial) is one Tune trial holding several memsweep trials,
each with its own row, finished when its pack reports it finished (an early stop) or the pack completes.
It keeps a row per trial (status, latest step of its budget, latest copy_frac and stop metric, `mem_twin` by
default) and renders a throttled
`rich.live.Live` table with counts, elapsed time and an ETA. When stdout is not a terminal (CI, log files) it
prints one compact line per finished trial instead, so logs stay short. A summary is printed at the end. Trials a
Ctrl-C stopped are shown as interrupted at the last step the store holds for them (they may have evaluated once more
after their last report reached the driver).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from ray import tune
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from analysis.registry import DEFAULT_MEM_METRIC
from sweeps.fanout import FAILED
from sweeps.packing import MEMBERS_KEY

# Tune logs INFO lines (e.g. "Wrote the latest version of all result files") to a handler that bypasses rich's
# stdout redirection; written inside the live region they leave a stale copy of the table on screen.
TUNE_LOGGER = "ray.tune"

STYLES = {"queued": "dim", "running": "cyan", "retrying": "yellow", "done": "green", "failed": "bold red",
          "interrupted": "magenta"}


@dataclass
class TrialRow:
    """What the view knows about one trial."""

    key: str
    label: str
    budget: int | None
    status: str = "queued"
    step: int | None = None
    copy_frac: float | None = None
    metric: float | None = None     # the stop metric (LiveProgress.metric)
    started: float | None = None
    finished: float | None = None
    error: str = ""

    def duration(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.finished if self.finished is not None else now) - self.started


def fmt_duration(seconds: float | None) -> str:
    """Seconds as '42s', '3m05s' or '2h07m'; '-' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"



def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _trial_payloads(trial: Any) -> list[dict[str, Any]]:
    """The TrialConfig dicts a Tune trial carries: one (config = {"trial": ...}), a pack's members (config =
    {"pack": {"members": [...]}}), or [{}] when unknown."""
    config = getattr(trial, "config", None) or {}
    config = config if isinstance(config, dict) else {}
    pack = config.get("pack")
    if isinstance(pack, dict) and isinstance(pack.get("members"), list):
        return [m for m in pack["members"] if isinstance(m, dict)] or [{}]
    payload = config.get("trial")
    return [payload if isinstance(payload, dict) else {}]


def _describe(payload: dict[str, Any]) -> str:
    """'uniform L=3 P=64 seed=0' from a TrialConfig dict (best effort, for display only)."""
    if not payload:
        return ""
    parts = []
    tail = payload.get("tail") or {}
    if tail:
        try:
            from sweeps.spec import TailSpec
            parts.append(TailSpec.from_dict(tail).label)
        except Exception:  # display only: an odd tail must not break the view
            parts.append(str(tail.get("family", "?")))
    grammar = payload.get("grammar") or {}
    for name, value in (("L", grammar.get("L")), ("P", payload.get("P")), ("seed", payload.get("seed"))):
        if value is not None:
            parts.append(f"{name}={value}")
    return " ".join(parts)


class LiveProgress(tune.Callback):
    """Live table of a sweep's trials (queued/running/done/failed, step, copy_frac, elapsed, ETA).

    total: number of trials, if known up front (else taken from Tune's setup or its trial list).
    console: where to draw (default: stdout); live: force the live table on/off (default: console.is_terminal).
    refresh_s: minimum seconds between redraws; max_rows: rows of the table (running trials first).
    metric: the stop metric, shown beside copy_frac; store, sweep: where interrupted trials' last steps are read.
    """

    def __init__(self, total: int | None = None, title: str = "sweep", console: Console | None = None,
                 live: bool | None = None, refresh_s: float = 0.5, max_rows: int = 20,
                 clock: Callable[[], float] = time.monotonic, metric: str = DEFAULT_MEM_METRIC,
                 store: str | None = None, sweep: str | None = None):
        self.total = total
        self.title = title
        self.metric = metric
        self.store, self.sweep = store, sweep
        self.console = console or Console()
        self.use_live = self.console.is_terminal if live is None else live
        self.refresh_s = refresh_s
        self.max_rows = max_rows
        self.clock = clock
        self.rows: dict[str, TrialRow] = {}
        self.t0: float | None = None
        self._live: Live | None = None
        self._last_draw = -math.inf
        self._finished_lines = 0
        self._closed = False
        self._peak = 1  # most trials seen running at once: the sweep's concurrency, for the ETA
        self._tune_log_level: int | None = None   # the Tune logger's level before the live view muted INFO

    # Tune pickles its RunConfig (callbacks included) into the experiment directory: leave out the console,
    # the live display and the clock, and make fresh ones on unpickling (they draw on the driver's stdout).
    _UNPICKLED = ("console", "_live", "clock", "_tune_log_level")

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._UNPICKLED}
        state["_clock_is_monotonic"] = self.clock is time.monotonic
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.pop("_clock_is_monotonic", None)
        self.__dict__.update(state)
        self.console = Console()
        self.clock = time.monotonic
        self._live = None
        self._tune_log_level = None

    # ---------------------------------------------------------------- Tune hooks
    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        if self.total is None and total_num_samples and total_num_samples > 0:
            self.total = total_num_samples
        self._start()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials:
            for row in self._rows(trial):
                if row.status == "queued" and str(getattr(trial, "status", "")).upper() == "RUNNING":
                    self._mark_running(row)
        known = len(self.rows)
        if self.total is None or known > self.total:
            self.total = max(known, self.total or 0)
        self._draw()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for row in self._open_rows(trial):
            self._mark_running(row)
        self._draw()

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.on_trial_start(iteration, trials, trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        members = result.get(MEMBERS_KEY) if isinstance(result.get(MEMBERS_KEY), dict) else None
        for row in self._open_rows(trial):
            if row.status in ("queued", "retrying"):
                self._mark_running(row)
            mine = result if members is None else members.get(row.key)
            if isinstance(mine, dict):
                self._update(row, mine)
                if members is not None and mine.get("finished"):   # a member that left its pack early
                    failed = mine.get("status") in FAILED
                    self._finish(row, "failed" if failed else "done")
        self._draw()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = getattr(trial, "last_result", None) or {}
        for row in self._open_rows(trial):
            if MEMBERS_KEY not in last:
                self._update(row, last)
            self._finish(row, "done")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for row in self._open_rows(trial):
            row.status = "retrying"
        self._draw(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = getattr(trial, "last_result", None) or {}
        for row in self._open_rows(trial):
            if MEMBERS_KEY not in last:
                self._update(row, last)
            row.error = str(getattr(trial, "error_file", "") or "")
            self._finish(row, "failed")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- bookkeeping
    def _start(self) -> None:
        if self.t0 is None:
            self.t0 = self.clock()
        if self.use_live and self._live is None and not self._closed:
            self._live = Live(console=self.console, auto_refresh=False, transient=False,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
            logger = logging.getLogger(TUNE_LOGGER)
            self._tune_log_level = logger.level
            if logger.getEffectiveLevel() < logging.WARNING:
                logger.setLevel(logging.WARNING)

    def _rows(self, trial: Any) -> list[TrialRow]:
        """The rows of the memsweep trials a Tune trial trains (one, or a pack's members), created on first sight."""
        tune_id = str(getattr(trial, "trial_id", id(trial)))
        payloads = _trial_payloads(trial)
        out = []
        for k, payload in enumerate(payloads):
            key = tune_id if len(payloads) == 1 else f"{tune_id}:{k}"
            row = self.rows.get(key)
            if row is None:
                budget = (payload.get("train") or {}).get("steps")
                row = TrialRow(key=str(payload.get("trial_id") or tune_id), label=_describe(payload), budget=budget)
                self.rows[key] = row
            out.append(row)
        return out

    def _open_rows(self, trial: Any) -> list[TrialRow]:
        """The rows of a Tune trial that are not finished yet (a pack's members that left it early are)."""
        return [r for r in self._rows(trial) if r.status not in ("done", "failed")]

    def _mark_running(self, row: TrialRow) -> None:
        self._start()
        row.status = "running"
        self._peak = max(self._peak, sum(r.status == "running" for r in self.rows.values()))
        if row.started is None:
            row.started = self.clock()

    def _update(self, row: TrialRow, result: dict) -> None:
        step = result.get("step", result.get("training_iteration"))
        if isinstance(step, (int, float)) and not isinstance(step, bool):
            row.step = int(step)
        frac = result.get("copy_frac")
        if isinstance(frac, (int, float)) and not isinstance(frac, bool):
            row.copy_frac = float(frac)
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row.metric = float(value)

    def _finish(self, row: TrialRow, status: str) -> None:
        if row.started is None:
            self._mark_running(row)
        row.status = status
        row.finished = self.clock()
        if not self.use_live:
            self._print_line(row)
        self._draw(force=True)

    # ---------------------------------------------------------------- numbers
    def counts(self) -> dict[str, int]:
        """Trials per status; `queued` includes trials Tune has not created yet (total - known)."""
        out = {s: 0 for s in STYLES}
        for row in self.rows.values():
            out[row.status] += 1
        if self.total is not None:
            out["queued"] += max(self.total - len(self.rows), 0)
        return out

    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else self.clock() - self.t0

    def eta(self) -> float | None:
        """Seconds left: mean finished-trial duration x the queued trials, plus what the running trials still
        need (budget left at their own step rate, else mean minus elapsed), spread over the running slots."""
        now = self.clock()
        done = [r.duration(now) for r in self.rows.values() if r.status in ("done", "failed")]
        done = [d for d in done if d is not None]
        running = [r for r in self.rows.values() if r.status in ("running", "retrying")]
        self._peak = max(self._peak, len(running))
        queued = self.counts()["queued"]
        if not running and not queued:
            return 0.0
        mean = sum(done) / len(done) if done else None
        left = 0.0
        for r in running:
            elapsed = r.duration(now) or 0.0
            if r.budget and r.step and elapsed > 0:
                left += elapsed * max(r.budget - r.step, 0) / r.step
            elif mean is not None:
                left += max(mean - elapsed, 0.0)
            else:
                return None
        if queued:
            if mean is None:
                return None
            left += queued * mean
        return left / self._peak

    # ---------------------------------------------------------------- rendering
    def _header(self) -> Text:
        c = self.counts()
        total = self.total if self.total is not None else len(self.rows)
        text = Text(f"{self.title}: ", style="bold")
        text.append(f"{c['done'] + c['failed']}/{total} finished  ")
        for status in ("running", "queued", "retrying", "done", "failed", "interrupted"):
            if c[status] or status in ("running", "queued", "done"):
                text.append(f"{status} {c[status]}  ", style=STYLES[status])
        text.append(f"elapsed {fmt_duration(self.elapsed())}")
        if not self._closed:  # the final state has nothing left to estimate
            text.append(f"  ETA {fmt_duration(self.eta())}")
        return text

    def render(self) -> Group:
        """The live view: a header line and a table of the most relevant trials."""
        table = Table(show_header=True, header_style="bold", expand=False, pad_edge=False)
        columns = [("trial", "left"), ("config", "left"), ("status", "left"), ("step", "right"), ("copy_frac", "right")]
        columns += [(self.metric, "right")] if self.metric != "copy_frac" else []
        for col, justify in (*columns, ("time", "right")):
            table.add_column(col, justify=justify, no_wrap=True)
        order = {"running": 0, "retrying": 1, "interrupted": 2, "failed": 3, "done": 4, "queued": 5}
        now = self.clock()
        rows = sorted(self.rows.values(), key=lambda r: (order[r.status], -(r.finished or r.started or 0.0)))
        for r in rows[: self.max_rows]:
            step = "-" if r.step is None else (f"{r.step}/{r.budget}" if r.budget else str(r.step))
            values = [_fmt(r.copy_frac)] + ([_fmt(r.metric)] if self.metric != "copy_frac" else [])
            table.add_row(r.key, r.label, Text(r.status, style=STYLES[r.status]), step, *values,
                          fmt_duration(r.duration(now)))
        hidden = len(rows) - self.max_rows
        parts: list[Any] = [self._header(), table]
        if hidden > 0:
            parts.append(Text(f"... {hidden} more trials", style="dim"))
        return Group(*parts)

    def _draw(self, force: bool = False) -> None:
        if self._live is None:
            return
        now = self.clock()
        if force or now - self._last_draw >= self.refresh_s:
            self._live.update(self.render(), refresh=True)
            self._last_draw = now

    def line(self, row: TrialRow) -> str:
        """The compact one-line record of a finished trial (non-terminal output)."""
        c = self.counts()
        total = self.total if self.total is not None else len(self.rows)
        step = "-" if row.step is None else str(row.step)
        metric = f" {self.metric}={_fmt(row.metric)}" if self.metric != "copy_frac" else ""
        return (f"[{c['done'] + c['failed']}/{total}] {row.status:<6} {row.key} {row.label} step={step} "
                f"copy_frac={_fmt(row.copy_frac)}{metric} time={fmt_duration(row.duration(self.clock()))} "
                f"elapsed={fmt_duration(self.elapsed())} eta={fmt_duration(self.eta())}")

    def _print_line(self, row: TrialRow) -> None:
        self.console.print(self.line(row), highlight=False, soft_wrap=True)
        self._finished_lines += 1

    def summary(self) -> str:
        """One line: how many trials finished, failed, were interrupted, are left, and the wall time (the words of
        `memsweep run`'s own closing line)."""
        c = self.counts()
        stopped = f"{c['interrupted']} interrupted, " if c["interrupted"] else ""
        left = "not started" if self._closed else "unfinished"   # once closed, running trials are interrupted
        return (f"{self.title}: {c['done']} done, {c['failed']} failed, {stopped}"
                f"{c['queued'] + c['running'] + c['retrying']} {left}, "
                f"wall time {fmt_duration(self.elapsed())}")

    def _stored(self, trial_ids: list[str]) -> tuple[set[str] | None, dict[str, int]]:
        """(the trial ids the store has a `trials` row of, {trial id: its last step in the store}): what the driver
        counts as interrupted (a row) or not started (none). (None, {}) without a store or when it cannot be read:
        the view then goes by what Tune reported (display only)."""
        if not self.store or not trial_ids:
            return None, {}
        try:
            from analysis.store import Store

            store = Store(self.store)
            rows = store.read("trials", sweep=self.sweep, trials=trial_ids, columns=["trial_id"])
            t = store.read("curves", sweep=self.sweep, trials=trial_ids, columns=["trial_id", "step"])
        except FileNotFoundError:  # nothing written yet: none of them started
            return set(), {}
        except Exception:  # noqa: BLE001 - unreadable: go by Tune's reports
            return None, {}
        steps: dict[str, int] = {}
        for tid, step in zip(t.column("trial_id").to_pylist(), t.column("step").to_pylist()):
            steps[tid] = max(steps.get(tid, 0), int(step))
        return set(rows.column("trial_id").to_pylist()), steps

    def close(self) -> None:
        """Stop the live display (showing its final state) and print the summary and any failures. Trials still
        running when the experiment ends were stopped unfinished (Ctrl-C): they are shown as interrupted."""
        if self._closed:
            return
        self._closed = True
        stopped = [row for row in self.rows.values() if row.status in ("running", "retrying")]
        started, stored = self._stored([row.key for row in stopped])
        for row in stopped:
            if started is not None and row.key not in started:   # stopped before it wrote anything: not started
                row.status, row.started = "queued", None
                continue
            row.status = "interrupted"
            row.step = stored.get(row.key, row.step)
            row.finished = self.clock()
            if not self.use_live:
                self._print_line(row)
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()
            self._live = None
        if self._tune_log_level is not None:
            logging.getLogger(TUNE_LOGGER).setLevel(self._tune_log_level)
            self._tune_log_level = None
        self.console.print(self.summary(), highlight=False, soft_wrap=True)
        for r in self.rows.values():
            if r.status == "failed":
                where = f" ({r.error})" if r.error else ""
                self.console.print(f"  failed: {r.key} {r.label}{where}", style="red", highlight=False,
                                   soft_wrap=True)
