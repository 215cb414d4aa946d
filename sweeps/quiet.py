"""What `memsweep run` and `demo` print: memsweep's own lines. Ray's and Optuna's INFO lines, Tune's banner, and
the deprecation and experimental warnings of the libraries are left out; `--verbose` shows them all.

`apply(verbose)` runs before Ray is imported (Ray reads RAY_LOGGER_LEVEL at import and resets its logger's level
in ray.init), so it is the first thing `sweeps.launch.run` does.
"""
from __future__ import annotations

import logging
import os
import warnings

# Always: Tune's console output is replaced by sweeps.progress (the legacy reporter at verbose=0 prints no
# banner) and the checkpoint-sync warning is noise for trials that checkpoint at every evaluation.
ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
       "RAY_USAGE_STATS_ENABLED": "0"}
# Unless --verbose: the level of the `ray` logger the driver's ray.init sets up.
QUIET_ENV = {"RAY_LOGGER_LEVEL": "warning"}
# Unless --verbose: library loggers and their quietest useful level. tensorboardX warns at every NaN metric it
# is handed (a metric undefined at a step, e.g. a null without twins); Tune's logger leaves NaN points out.
LOGGERS = {"ray": logging.WARNING, "ray.tune": logging.WARNING, "ray.train": logging.WARNING,
           "optuna": logging.WARNING, "tensorboardX": logging.ERROR}
# Unless --verbose: warnings of the libraries memsweep drives, not of memsweep's own code.
LIBRARIES = r"(ray|optuna|tensorboardX|torch|pyarrow)(\.|$)"


def apply(verbose: bool = False) -> None:
    """Quiet the libraries for a normal run (see the module docstring); with `verbose`, only the env that replaces
    Tune's console output."""
    for key, value in {**ENV, **({} if verbose else QUIET_ENV)}.items():
        os.environ.setdefault(key, value)
    if verbose:     # a quiet run earlier in this process (a test, a notebook) must not silence Ray's processes now
        for key, value in QUIET_ENV.items():
            if os.environ.get(key) == value:
                del os.environ[key]
    study_stop = logging.getLogger(OPTUNA_SEARCH_LOGGER)
    for f in [f for f in study_stop.filters if isinstance(f, _DropStudyStop)]:
        study_stop.removeFilter(f)
    if verbose:
        return
    for name, level in LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < level:
            logger.setLevel(level)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARIES)
    study_stop.addFilter(_DropStudyStop())


# Optuna's GridSampler calls Study.stop when its grid is used up, which Optuna only allows inside optimize(); under
# Tune's ask-and-tell Ray logs the refusal as a warning about nothing (the runner plans how many trials Tune asks for).
OPTUNA_SEARCH_LOGGER = "ray.tune.search.optuna.optuna_search"


class _DropStudyStop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Study.stop" not in record.getMessage()
