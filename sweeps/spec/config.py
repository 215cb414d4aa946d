"""`TrialConfig`: everything one trial needs, and its stable id.

Its plain-dict form (`to_dict`, what crosses Ray Tune's param_space), the inverse (`from_dict`) and the flat dotted
view (`flat`, the trials table's `cfg.*` columns) are derived from the dataclass fields by `sweeps.spec.fields`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from analysis.overest import OVEREST_STRINGS
from analysis.registry import DEFAULT_MEM_METRIC
from models import ModelConfig, TrainConfig
from rhm import GrammarSpec
from sweeps.spec.fields import flatten, from_plain, to_plain
from sweeps.spec.tail import TailSpec

# Fields that are identity, not configuration: left out of the trial-id hash and of .flat(). `spec` and
# `spec_copy` name the sweep spec the trial was planned from (sweeps.spec.storage.spec_key, copy_digest; "" when
# built without one): the trials table's `spec` and `spec_copy`.
IDENTITY = ("sweep", "trial_id", "store", "spec", "spec_copy")
# Fields added after trial ids were first published: left out of the hash at the value that reproduces the
# behaviour of trials written before they existed, so those trials keep their ids (and a store resumes them).
# overest_strings: None (every string) is what the probe did before the field existed.
LEGACY = {"stop_metric": "copy_frac", "data_draw": "data", "overest_every": 0, "overest_strings": None}
# train.compile was a bool before it named a mode: the modes that a bool meant hash as that bool.
LEGACY_COMPILE = {"off": False, "network": True}


@dataclass(frozen=True, kw_only=True)
class TrialConfig:
    """Everything one trial needs, plain enough to cross Ray Tune's param_space via to_dict()/from_dict().

    `trial_id` is derived from every field but the IDENTITY ones (left empty, it is computed), so
    re-expanding the same spec gives the same ids and a resumed sweep finds its trials in the store.
    """

    sweep: str
    trial_id: str = ""
    store: str
    grammar: GrammarSpec
    tail: TailSpec
    P: int
    unique: bool = True
    heldout: int = 256
    data_seed: int
    data_draw: str = "data"     # rhm.DATA_DRAWS; specs write "grammar+data", the default reads configs from before
    model: ModelConfig
    train: TrainConfig
    n_gen: int = 256
    sample_steps: int | None = None
    overest_every: int = 0
    overest_strings: int | None = OVEREST_STRINGS
    theta_stop: float | None = None
    stop_patience: int = 2
    stop_metric: str = DEFAULT_MEM_METRIC
    seed: int
    spec: str = ""
    spec_copy: str = ""

    def __post_init__(self) -> None:
        from rhm import DATA_DRAWS
        if self.data_draw not in DATA_DRAWS:
            raise ValueError(f"data_draw must be one of {DATA_DRAWS}, got {self.data_draw!r}")
        if not self.trial_id:
            object.__setattr__(self, "trial_id", f"{self.sweep}-{self.content_hash()}")

    def _content(self) -> dict[str, Any]:
        """What the trial is: every field but the identity ones, the stop metric only when a trial stops and the probe's
        subset only when it probes."""
        d = self.to_dict()
        for k in IDENTITY:
            d.pop(k)
        if self.theta_stop is None:
            d.pop("stop_metric")
        if not self.overest_every:
            d.pop("overest_strings")      # the probe's subset, meaningless where nothing is probed
        for k, legacy in LEGACY.items():
            if d.get(k, legacy) == legacy:
                d.pop(k, None)
        d["train"]["compile"] = LEGACY_COMPILE.get(d["train"]["compile"], d["train"]["compile"])
        if d["tail"].get("rest") is None:
            d["tail"].pop("rest", None)    # tails without a law elsewhere keep the ids they had before `rest`
        return d

    def content_hash(self) -> str:
        """10 hex digits of sha1 over the canonical JSON of what the trial is (see _content)."""
        blob = json.dumps(self._content(), sort_keys=True, separators=(",", ":"), allow_nan=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    @property
    def L(self) -> int:
        return self.grammar.L

    @property
    def d(self) -> int:
        return self.grammar.d

    @property
    def steps(self) -> int:
        """The trial's step budget."""
        return self.train.steps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (only str/int/float/bool/None, lists and dicts)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrialConfig":
        """Inverse of to_dict (keeps the given trial_id)."""
        return from_plain(cls, d)

    def flat(self) -> dict[str, Any]:
        """Every configuration value under a dotted name ("grammar.v", "model.width", "tail.levels", ...),
        scalars only; the identity fields sweep/trial_id/store are left out."""
        d = self.to_dict()
        for k in IDENTITY:
            d.pop(k)
        out: dict[str, Any] = {}
        flatten("", d, out)
        return out
