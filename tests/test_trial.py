"""A trial is a pure function of its config: same seeds, same model, whatever ran before it in the process."""
from __future__ import annotations

import torch

from sweeps.spec import SweepSpec, load_spec
from sweeps.trial import build_data, build_trainer


def _trial(tmp_path, seed: int):
    raw = dict(load_spec("tiny").raw)
    raw.update(store=str(tmp_path / "store"))
    raw["axes"] = {"tail": [{"family": "uniform"}], "P": [4], "seed": [seed]}
    return SweepSpec.from_dict(raw).trials()[0]


def test_model_init_depends_on_the_trial_seed_only(tmp_path):
    cfg = _trial(tmp_path, 0)
    data = build_data(cfg)
    torch.manual_seed(1)
    a = build_trainer(cfg, data, "cpu").model.state_dict()
    torch.manual_seed(2)  # a different global RNG state, as after other trials in a reused Ray worker
    torch.rand(1000)
    b = build_trainer(cfg, data, "cpu").model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = _trial(tmp_path, 1)
    c = build_trainer(other, build_data(other), "cpu").model.state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the seed axis really changes the init
