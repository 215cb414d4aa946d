"""Ctrl-C during a sweep: the first one stops Ray Tune gracefully (it snapshots the experiment, stops the trials,
and `run_sweep` reports them as interrupted), a second one stops at once (KeyboardInterrupt). Tune's own handler
and its `Tuner.restore(...)` hint are replaced: memsweep resumes with `memsweep run SPEC --resume`.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Callable

# Tune's messages about the interruption, replaced by memsweep's own (they point at Tuner.restore).
_TUNE_HINTS = ("Stop signal received", "Experiment has been interrupted", "Trials did not complete",
               "Resume experiment with", "Training has been interrupted")
_TUNE_LOGGER = "ray.tune.tune"


class _DropTuneHints(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(h in record.getMessage() for h in _TUNE_HINTS)


class SigintGuard:
    """Context manager around `Tuner.fit()`: `hit` tells afterwards whether the user interrupted the sweep.

    The first SIGINT calls every `on_interrupt` callback and asks Tune to stop through SIGUSR1 (the signal Tune
    always handles as "stop gracefully"); if Tune's loop is not running yet, or on a second SIGINT, it raises
    KeyboardInterrupt. Outside the main thread (where no handler can be installed) it does nothing.
    """

    def __init__(self, on_interrupt: Callable[[], Any] | None = None):
        self.hit = False
        self.on_interrupt = on_interrupt
        self._prev: Any = None
        self._env: str | None = None
        self._usr1: Any = None
        self._filter = _DropTuneHints()
        self._active = False

    def __enter__(self) -> "SigintGuard":
        if threading.current_thread() is not threading.main_thread():
            return self
        self._active = True
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        self._prev = signal.signal(signal.SIGINT, self._handle)
        self._usr1 = signal.getsignal(signal.SIGUSR1)
        logging.getLogger(_TUNE_LOGGER).addFilter(self._filter)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        usr1 = signal.getsignal(signal.SIGUSR1)
        tune_listens = callable(usr1) and usr1 is not self._usr1  # Tune's loop installed it
        if self.hit or not tune_listens:
            self.hit = True
            raise KeyboardInterrupt
        self.hit = True
        if self.on_interrupt is not None:
            self.on_interrupt()
        os.kill(os.getpid(), signal.SIGUSR1)

    def __exit__(self, *exc: Any) -> None:
        if not self._active:
            return
        signal.signal(signal.SIGINT, self._prev)
        signal.signal(signal.SIGUSR1, self._usr1)  # Tune leaves its handler installed
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env
        logging.getLogger(_TUNE_LOGGER).removeFilter(self._filter)
