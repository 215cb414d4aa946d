"""Packs: which trials of a sweep train together, as the members of one Tune trial (sweeps.pack_trial).

Members of a pack share one model (a member axis K on every parameter, models.packed), one `TrainConfig` but its
seed, one evaluation schedule and one held-out set size, so the compatibility key (`pack_key`) is everything of a
`TrialConfig` but its identity (sweep, id, store), its data (tail, P, unique, data seed, the grammar's rule laws
and seed) and its seeds. Trials with different keys are never forced into one pack.

Grouping is deterministic: the spec's grid order, trials of one key in that order, cut into packs of up to `size`
members. A pack's id hashes its members' trial ids, and packs are cut from the whole grid before finished trials
are left out, so a sweep resumed by a later driver finds the same packs (and their checkpoints) again.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sweeps.spec import TrialConfig

# In every result a pack reports to Tune: {member trial id: the result it would report alone, plus "finished"}
# (sweeps.pack_trial writes it, sweeps.progress counts members from it, sweeps.fanout gives loggers one run each).
MEMBERS_KEY = "memsweep_members"
# What may differ between the members of a pack (left out of the key): identity, data and seeds.
_NOT_SHARED = ("sweep", "trial_id", "store", "tail", "P", "unique", "data_seed", "seed")
_GRAMMAR_SHAPE = ("v", "n_c", "m", "s", "L")   # the grammar's rule laws and seed are data


def pack_key(trial: TrialConfig) -> str:
    """The canonical JSON of everything members of one pack must share: model, training settings but the seed,
    evaluation and stop settings, held-out size and the grammar's shape."""
    d = trial.to_dict()
    for k in _NOT_SHARED:
        d.pop(k)
    d["grammar"] = {k: d["grammar"][k] for k in _GRAMMAR_SHAPE}
    d["train"] = {k: v for k, v in d["train"].items() if k != "seed"}
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=True)


@dataclass(frozen=True)
class Pack:
    """Up to K compatible trials trained as one Tune trial; `pack_id` names it in Tune and in its checkpoints."""

    pack_id: str
    members: tuple[TrialConfig, ...]

    @property
    def member_ids(self) -> list[str]:
        return [t.trial_id for t in self.members]

    def without(self, finished: Iterable[str]) -> "Pack":
        """The same pack (same id) without the members in `finished`."""
        gone = set(finished)
        return Pack(self.pack_id, tuple(t for t in self.members if t.trial_id not in gone))

    def to_dict(self) -> dict[str, Any]:
        """What crosses Tune's param_space: {"pack_id", "members": [TrialConfig.to_dict(), ...]}."""
        return {"pack_id": self.pack_id, "members": [t.to_dict() for t in self.members]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Pack":
        members = tuple(TrialConfig.from_dict(m) for m in d["members"])
        if len({pack_key(t) for t in members}) > 1:
            raise ValueError(f"pack {d.get('pack_id')!r} mixes trials that cannot share a pack (model, training or "
                             "evaluation settings differ); sweeps.packing.group_packs never builds one")
        return cls(str(d["pack_id"]), members)


def pack_id(sweep: str, member_ids: Sequence[str]) -> str:
    """`<sweep>-pack-<10 hex digits of sha1 over the member ids>`: stable while the grid and the size are."""
    return f"{sweep}-pack-{hashlib.sha1(','.join(member_ids).encode()).hexdigest()[:10]}"


def group_packs(trials: Sequence[TrialConfig], size: int) -> list[Pack]:
    """The trials cut into packs of up to `size` members of one key each, in grid order (deterministic)."""
    from models import check_pack_size

    check_pack_size(size, "pack.size")
    groups: dict[str, list[TrialConfig]] = {}
    for t in trials:
        groups.setdefault(pack_key(t), []).append(t)
    packs = []
    for group in groups.values():
        for i in range(0, len(group), size):
            members = tuple(group[i:i + size])
            packs.append(Pack(pack_id(members[0].sweep, [t.trial_id for t in members]), members))
    return packs


def plan_packs(trials: Sequence[TrialConfig], size: int, finished: Iterable[str]) -> list[Pack]:
    """The packs still to train: the whole grid grouped, then finished members left out (empty packs dropped)."""
    done = set(finished)
    return [p for p in (q.without(done) for q in group_packs(trials, size)) if p.members]


def member_ids_of(config: Mapping[str, Any]) -> list[str]:
    """The store's trial ids a Tune config trains: one for a lone trial ({"trial": ...}), the members of a pack."""
    if isinstance(config.get("pack"), Mapping):
        return [str(m.get("trial_id")) for m in config["pack"].get("members", ()) if m.get("trial_id")]
    tid = (config.get("trial") or {}).get("trial_id")
    return [str(tid)] if tid else []


def memory_problems(packs: Sequence[Pack], budget: float | None) -> list[str]:
    """For each distinct pack shape whose memory estimate (models.memory) exceeds `budget` bytes: the problem,
    naming the pack size that would fit. Nothing when the budget is unknown."""
    if not budget:
        return []
    from models import build_model, estimate_memory

    out, seen = [], set()
    for p in packs:
        t, K = p.members[0], len(p.members)
        if (pack_key(t), K) in seen:
            continue
        seen.add((pack_key(t), K))
        g = t.grammar
        model = build_model(t.model, g.v, g.d, g.s, g.L, seed=[0] * K)
        est = estimate_memory(model, t.train.batch_size, max(m.P for m in p.members), ema=t.train.ema > 0)
        try:
            est.check(int(budget))
        except ValueError as e:
            out.append(f"pack.size: {e}")
    return out
