"""Sweep specifications as data: a YAML file (+ command-line overrides) -> a validated `SweepSpec` -> one
`TrialConfig` per grid point.

YAML format (every key below is optional unless marked *required*; see sweeps/presets/*.yaml for full examples):

    name: demo                      # *required*; letters, digits, '_', '-', '.'; names the sweep in the store
    description: one line           # shown by `memsweep presets`
    store: runs/demo/store          # *required*; local path, file://, s3://, gs://, hdfs://, abfs:// URI.
                                    #   Relative local paths resolve against the CWD at load time (made absolute,
                                    #   so Ray workers, whose CWD differs, write to the same place).
    mode: grid                      # grid | optuna-grid | optuna-boundary (see `optuna` below)
    grammar: {v: 16, n_c: 4, m: 4, s: 2, L: 3, seed: 0, root: {family: uniform}}   # rhm.GrammarSpec fields
    tail: {family: power, a: 1.0, levels: [0]}   # rule-probability tail; `levels` None = every level,
                                    #   negative levels count from the leaves (-1 = the level just above the tokens)
    data: {P: 32, unique: true, heldout: 256, draw: grammar+data}   # training-set size, unique strings or i.i.d.,
                                    #   held-out set size; draw: which seeds draw them (grammar+data: both the
                                    #   grammar seed and the data seed; data: the data seed alone, as before)
    model: {process: masked, backbone: transformer, width: 64, depth: 2, heads: 4}   # models.ModelConfig fields
    train: {steps: 4000, batch_size: 32, lr: 1.0e-3, evals_per_decade: 8, first_eval: 10}   # models.TrainConfig
    eval: {n_gen: 256, sample_steps: null, overest_every: 0, overest_strings: 64}   # generated samples per
                                    #   evaluation; sampler steps (null = the exact sampler: masked unmasks one
                                    #   position per network call, uniform walks all T); overest_every: k probes
                                    #   overestimation at every k-th evaluation (analysis.overest; masked only;
                                    #   0 = never) on a fixed random subset of overest_strings training strings
                                    #   and as many held-out ones (null: all of them)
    stop: {theta: 0.9, patience: 2, metric: mem_excess}   # early stop once `metric` >= theta at `patience`
                                    #   consecutive evaluations; metric: one of analysis.registry.OBJECTIVE_METRICS
                                    #   (default DEFAULT_MEM_METRIC); omit the section to train every trial fully
    seed: 0                         # fixed seed when `seed` is not an axis
    axes:                           # *required*, non-empty: the grid is the cartesian product, first axis slowest
      tail: [{family: uniform}, {family: power, a: 0.5}]
      L: [3]                        # shorthand for grammar.L
      P: [16, 32, 64]               # shorthand for data.P
      seed: [0, 1, 2]
      model.width: [64, 128]        # any other per-trial setting by its dotted name <section>.<key>
    resources: {cpu: 1, gpu: 0}     # per trial (per pack); gpu may be fractional below 1 (0.25 = four per GPU)
    pack: {size: 1}                 # grid mode: train up to `size` compatible trials as one pack, one vectorized
                                    #   step for all (sweeps.packing); 1 = one trial at a time; Optuna modes: 1
    optuna: {trials: 20, target_step: 2000, metric: mem_excess, theta: 0.5, journal: runs/demo/optuna.journal}

Tails in either convention (tails and grammar.root): this project's `a`, p(k) ~ k**-a over ranks k = 1..m
(`{family: power, a: 2}`), or the Zipf-RHM convention of Cagnetta, Kang & Wyart (ICML 2025), f_k ~ k**-(1+a_zipf),
written `zipf_a` (`{family: power, zipf_a: 1.0}` is a = 2). Both normalize to `a`, so the trial id and the store's
`tail` label ("power(a=2)") are the same whichever was written; giving both, or a zipf_a below -1 (a < 0), is an
error.

Overrides (`memsweep run demo train.steps=2000 axes.P=[8,16]`, `SweepSpec.from_dict(d, overrides=[...])`) are
applied to the YAML mapping before validation, so they are checked exactly like the YAML; see
sweeps.spec.overrides. `spec.to_dict()` / `to_yaml()` give the effective spec back; from_dict of it gives the same
trials.

Seeds: `seed` drives the data sample and the model init (data_seed = train.seed = seed). The grammar itself is
fixed per (tail, L, ...) across seeds, drawn from `grammar.seed` (default 0), so seeds measure the spread over
training sets and inits on one grammar; make `grammar.seed` an axis to also vary the grammar. The data draw is
seeded by both (`rhm.draw_seed`), so two grammar seeds are two independent samples (`data.draw: data` gives the
draw of stores written before, where they shared one).

Modes: `grid` runs every point. `optuna-grid` runs the same grid through Optuna's GridSampler (the study is
journaled to `optuna.journal`, so an interrupted sweep resumes). `optuna-boundary` lets Optuna pick points among
the axes' listed values (categorical) to locate the memorization boundary: each trial's objective is
(`metric` at `target_step` - `theta`)^2, so the study concentrates where memorization just reaches `theta` by
`target_step`; it runs `optuna.trials` trials.

Floats written like `1e-3` (which YAML 1.1 reads as a string) are accepted wherever a number is expected.
Every problem in a spec is reported at once in one `SpecError`, one line per problem: key path, bad value, what
would be valid. Values no machine can hold or finish (sweeps.spec.bounds) are problems too.

Modules: fields (the generic field machinery, on pydantic), sections (the spec's own section dataclasses), tail,
config (TrialConfig), sweep (SweepSpec and its grid), build (validation), overrides, storage (store URIs and access),
bounds (memory and time limits); presets live in sweeps.presets.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from sweeps.spec.config import TrialConfig
from sweeps.spec.errors import SpecError
from sweeps.spec.fields import MISSING
from sweeps.spec.sections import (MODES, DataSection, EvalSection, OptunaSpec, PackSection, Resources,
                                  StopSection)
from sweeps.spec.storage import check_access, check_store, resolve_store
from sweeps.spec.sweep import AXIS_ALIASES, Axis, SweepSpec
from sweeps.spec.tail import FAMILIES, TailSpec
from sweeps.presets import PRESETS_DIR, preset_descriptions, preset_names, preset_path

__all__ = ["AXIS_ALIASES", "Axis", "DataSection", "EvalSection", "FAMILIES", "MISSING", "MODES", "OptunaSpec",
           "PackSection", "PRESETS_DIR", "Resources", "SpecError", "StopSection", "SweepSpec", "TailSpec",
           "TrialConfig", "check_access", "check_store", "load_spec", "preset_descriptions", "preset_names",
           "preset_path", "resolve_store"]


def load_spec(name_or_path: str | os.PathLike, overrides: Sequence[str] = ()) -> SweepSpec:
    """A spec from a YAML file path, or else from the preset of that name, with overrides applied; SpecError
    when neither exists."""
    path = Path(name_or_path)
    if path.is_file():
        return SweepSpec.from_yaml(path, overrides)
    if (PRESETS_DIR / f"{name_or_path}.yaml").is_file():
        return SweepSpec.from_yaml(preset_path(str(name_or_path)), overrides)
    raise SpecError([f"{str(name_or_path)!r} is neither a spec file nor a preset; presets: "
                     f"{', '.join(preset_names())}"])
