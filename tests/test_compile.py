"""`train.compile`: the modes validate at the boundary, and a compiled step trains what the eager step trains.

References: the eager Trainer (bit-exact on CPU, tests/test_pack.py) for the compiled step's losses and weights,
member by member through a drop and a resume; the seed-to-seed spread of the eager loss curve for the 2,000-step
tolerance; torch._dynamo's own counters for the number of compiled graphs.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from models import COMPILE_MODES, ModelConfig, TrainConfig, Trainer, build_model
from models import train as train_mod

torch.set_num_threads(1)

V, S, L = 8, 2, 3
D = S ** L
MCFG = ModelConfig(process="masked", backbone="tree_conv", width=16, depth=2)
TCFG = TrainConfig(steps=30, batch_size=8, lr=3e-3, weight_decay=0.1, grad_clip=0.5, evals_per_decade=2,
                   first_eval=10)


def data(seed: int, P: int = 24) -> torch.Tensor:
    return torch.randint(V, (P, D), generator=torch.Generator().manual_seed(100 + seed))


def pack(seeds: list[int], cfg: TrainConfig, mcfg: ModelConfig = MCFG) -> Trainer:
    return Trainer(build_model(mcfg, V, D, S, L, seed=seeds), [data(s, 16 + 4 * s) for s in seeds], cfg,
                   seeds=seeds, member_ids=[f"m{s}" for s in seeds])


@pytest.fixture
def aot_eager(monkeypatch):
    """The compiled step through dynamo and AOT autograd without inductor's C++ build (minutes on a small CPU)."""
    torch._dynamo.reset()
    counters.clear()
    real = train_mod.compiled_member_grads
    monkeypatch.setattr(train_mod, "compiled_member_grads", lambda: real("aot_eager"))
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("value, mode", [(False, "off"), (True, "network"), ("off", "off"), ("network", "network"),
                                         ("step", "step")])
def test_compile_modes_and_their_boolean_spellings(value, mode) -> None:
    assert TrainConfig(steps=1, compile=value).compile == mode


@pytest.mark.parametrize("bad", ["Step", "all", 1, None, "true"])
def test_a_bad_compile_mode_is_refused_naming_the_valid_ones(bad) -> None:
    with pytest.raises(ValueError, match=r"compile=.*invalid.*off, network, step"):
        TrainConfig(steps=1, compile=bad)
    assert COMPILE_MODES == ("off", "network", "step")


def _run(tr: Trainer, drop_at: int | None = None, drop: tuple[str, ...] = ()) -> dict[str, list[torch.Tensor]]:
    """Every member's per-step losses, by member id, with `drop` leaving at evaluation `drop_at`."""
    out: dict[str, list[torch.Tensor]] = {m: [] for m in tr.member_ids}

    def on_eval(t: Trainer, step: int) -> bool:
        for m, row in zip(t.member_ids, t.step_losses):
            out[m].append(row.clone())
        if step == drop_at:
            t.drop(drop)
        return False

    tr.run(on_eval)
    return {m: torch.cat(v) for m, v in out.items()}


@pytest.mark.slow
def test_compiled_step_pack_equals_eager_lone_trials_through_drop_and_resume(aot_eager, tmp_path) -> None:
    """A pack of 4 with `compile: step` loses a member at step 10, is checkpointed and resumed as a pack of 2 at
    step 20: every member's losses and final weights equal its eager lone run's (the eager pack is bit-exact with
    the lone run; the compiled step is the same arithmetic). Graphs: K = 4, then one with K symbolic that serves
    K = 3 and the resumed K = 2; lone trials (K = 1, which dynamo always specializes) compile once more, the first
    lone trial only: the graphs are bounded, whatever the number of trials, drops and resumes."""
    cfg = dataclasses.replace(TCFG, compile="step")
    tr = pack([0, 1, 2, 3], dataclasses.replace(cfg, steps=20))
    losses = _run(tr, drop_at=10, drop=("m1",))
    tr.save(tmp_path / "ck.pt")
    resumed = pack([2, 3], cfg)
    resumed.load(tmp_path / "ck.pt")
    later = _run(resumed)
    graphs_pack = counters["stats"]["unique_graphs"]
    for s in (0, 2, 3):
        alone = pack([s], dataclasses.replace(TCFG, steps=30 if s in (2, 3) else 20))
        ref = _run(alone)[f"m{s}"]
        got = torch.cat([losses[f"m{s}"]] + ([later[f"m{s}"]] if s in (2, 3) else []))
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
        if s in (2, 3):
            k = resumed.member_ids.index(f"m{s}")
            for p, q in zip(resumed.model.parameters(), alone.model.parameters()):
                torch.testing.assert_close(p[k], q[0], rtol=1e-4, atol=1e-5)
    assert losses["m1"].shape == (10,)
    # graphs of the forward/backward and of the clipping after backward's break, at K = 4 and at symbolic K
    assert graphs_pack <= 4, f"{graphs_pack} graphs for K = 4, 3, 2"
    pack([0], dataclasses.replace(cfg, steps=10)).run()
    graphs_lone = counters["stats"]["unique_graphs"]
    assert graphs_lone <= graphs_pack + 2
    for s in (2, 3):                           # later lone trials in this process reuse the first one's graphs
        pack([s], dataclasses.replace(cfg, steps=10)).run()
    assert counters["stats"]["unique_graphs"] == graphs_lone


# The stated tolerance of a compiled trial's loss curve over 2,000 steps, in 200-step window means (nats per token):
# the first window within FIRST_ATOL of eager's (rounding only: the trajectories have not parted yet); every window
# within CURVE_ATOL (the loss is ~1.6-2.0: under 4%); and on average no farther from eager than another seed's
# curve is. Why not tighter: rounding differences grow along the trajectory (measured here: 1e-4 in the first
# window, 0.044 at most later, against 0.050 at most between seeds 0 and 1), so a compiled trial is the same trial
# only up to a seed-sized wander of its curve, and its memorization metrics up to the seed-to-seed spread.
FIRST_ATOL = 1e-3
CURVE_ATOL = 0.06
WINDOW = 200


@pytest.mark.slow
def test_compiled_trial_loss_curve_stays_within_tolerance_of_eager_over_2000_steps() -> None:
    """Inductor's fused kernels round differently from eager, so the trajectories part by rounding only: the same
    batches and noise, the same arithmetic. Reference: the eager curve, and the spread of another seed's."""
    mcfg = ModelConfig(process="masked", backbone="tree_conv", width=16, depth=2)
    cfg = TrainConfig(steps=2000, batch_size=16, lr=3e-3, grad_clip=1.0, evals_per_decade=1, first_eval=2000)
    curves = {}
    for name, seed, mode in (("eager", 0, "off"), ("compiled", 0, "step"), ("other seed", 1, "off")):
        tr = Trainer(build_model(mcfg, V, D, S, L, seed=seed), data(0, 64), dataclasses.replace(cfg, compile=mode))
        tr.run()
        curves[name] = tr.losses.view(-1, WINDOW).double().mean(1)
    gap = (curves["compiled"] - curves["eager"]).abs()
    spread = (curves["other seed"] - curves["eager"]).abs()
    assert gap[0] <= FIRST_ATOL, (gap, curves)
    assert gap.max() <= CURVE_ATOL, (gap, curves)
    assert gap.mean() <= spread.mean(), (gap, spread)


def test_specs_keep_their_trial_ids_and_name_the_valid_modes() -> None:
    """`compile: true/false` in an older spec is the same trial as `network`/`off` (same id, so a store resumes it);
    `step` is another trial (it rounds differently); a bad value is refused at validation, naming the modes."""
    from sweeps.spec import SpecError, load_spec

    def ids(value: str) -> list[str]:
        return [t.trial_id for t in load_spec("tiny", [f"train.compile={value}"]).trials()]

    plain = [t.trial_id for t in load_spec("tiny").trials()]
    assert ids("false") == ids("off") == plain
    assert ids("true") == ids("network") != plain
    # what the id hashes is what it hashed when compile was a bool (so ids written then are found again)
    hashed = {v: load_spec("tiny", [f"train.compile={v}"]).trials()[0]._content()["train"]["compile"]
              for v in ("off", "network", "step")}
    assert hashed == {"off": False, "network": True, "step": "step"}
    assert set(ids("step")).isdisjoint(plain + ids("network"))
    with pytest.raises(SpecError, match="off, network, step"):
        load_spec("tiny", ["train.compile=fast"])
