"""Packs: K members trained in one vectorized step, each exactly the trial it would be alone.

The reference for every member is the same trial trained alone (K = 1) with the same seeds and data: initial
weights, batch indices, noise draws, losses, samples and held-out losses must agree; so must a pack resumed from a
checkpoint after a member left. Per-member clipping is checked against torch's `clip_grad_norm_` on each member's
slices, the memory estimate against the heap bytes the forward pass really holds.
"""
from __future__ import annotations

import ctypes
import dataclasses
import math

import pytest
import torch

from models import (MemberRNG, ModelConfig, TrainConfig, Trainer, build_model, check_pack_size, estimate_memory)
from models.memory import HEADROOM

torch.set_num_threads(1)

V, D, S, L = 8, 8, 2, 3
SEEDS = [11, 3, 7, 0, 5, 2, 13, 1]
P_SIZES = [4, 6, 12, 5, 8, 4, 16, 9]            # members differ in P


def tokens(n: int, seed: int, v: int = V, d: int = D) -> torch.Tensor:
    return torch.randint(v, (n, d), generator=torch.Generator().manual_seed(seed))


def member_data(k: int) -> torch.Tensor:
    return tokens(P_SIZES[k], seed=100 + k)


def copy_frac(x: torch.Tensor, train: torch.Tensor) -> float:
    return (x[:, None, :] == train[None]).all(-1).any(-1).float().mean().item()


def record(trainer: Trainer) -> dict[str, list[torch.Tensor]]:
    """Spy on a trainer: every batch x0 (K, B, d) and every random draw (K, ...) it makes, in order."""
    log: dict[str, list[torch.Tensor]] = {"batch": [], "draws": []}
    batch, rand, randint = trainer._batch, trainer.rng.rand, trainer.rng.randint

    def spy(fn, key):
        def wrapped(*a):
            out = fn(*a)
            log[key].append(out.clone())
            return out
        return wrapped

    trainer._batch = spy(batch, "batch")
    trainer.rng.rand, trainer.rng.randint = spy(rand, "draws"), spy(randint, "draws")
    return log


MCFGS = {       # (model, sampler steps): the exact sampler for masked, 10 of the T = 100 uniform steps (speed)
    "masked-transformer": (ModelConfig(process="masked", backbone="transformer", width=32, depth=2, heads=2), None),
    "uniform-tree_conv": (ModelConfig(process="uniform", backbone="tree_conv", width=32, depth=2), 10),
}
# weight decay and a tight clip make per-member decay and per-member clipping matter in every step
TCFG = TrainConfig(steps=50, batch_size=16, lr=3e-3, weight_decay=0.1, grad_clip=0.5, evals_per_decade=2,
                   first_eval=10)


# ---------------------------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("name", sorted(MCFGS))
def test_member_in_pack_of_8_equals_the_trial_alone(name: str) -> None:
    mcfg, sample_steps = MCFGS[name]
    pack = Trainer(build_model(mcfg, V, D, S, L, seed=SEEDS), [member_data(k) for k in range(8)], TCFG,
                   seeds=SEEDS)
    pack_log = record(pack)
    init = {n: p.detach().clone() for n, p in pack.model.named_parameters()}
    chunks: list[torch.Tensor] = []
    pack.run(lambda t, step: chunks.append(t.step_losses.clone()) and False)
    pack_losses = torch.cat(chunks, dim=1)                                   # (8, 50): every step's loss
    assert pack.step == 50 and pack_losses.shape == (8, 50)
    held = torch.stack([tokens(40, seed=200 + k) for k in range(8)])
    pack_samples = pack.sample_members(64, sample_steps, [1000 + k for k in range(8)])
    pack_held = pack.eval_losses(held, seed=5)

    for k in (0, 3, 7):             # first, middle and last member, P = 4, 5 and 9 (alone runs cost time)
        alone = Trainer(build_model(mcfg, V, D, S, L, seed=SEEDS[k]), member_data(k), TCFG, seeds=[SEEDS[k]])
        assert all(torch.equal(init[n][k], p[0]) for n, p in alone.model.named_parameters()), "initial weights"
        log = record(alone)
        losses: list[torch.Tensor] = []
        alone.run(lambda t, step: losses.append(t.losses.clone()) and False)
        assert len(log["batch"]) == len(pack_log["batch"]) == 50
        assert all(torch.equal(a[0], b[k]) for a, b in zip(log["batch"], pack_log["batch"])), "batch indices"
        assert len(log["draws"]) == len(pack_log["draws"])
        assert all(torch.equal(a[0], b[k]) for a, b in zip(log["draws"], pack_log["draws"])), "noise draws"
        torch.testing.assert_close(torch.cat(losses), pack_losses[k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor([h[1] for h in alone.history]),
                                   torch.tensor([h[1] for h in pack.histories[k]]), rtol=1e-5, atol=1e-6)
        samples = alone.sample(64, sample_steps, seed=1000 + k)
        same = (samples == pack_samples[k]).all(-1).float().mean().item()
        assert same >= 0.95, f"member {k}: only {same:.0%} of its samples match the trial alone"
        cf_alone, cf_pack = copy_frac(samples, member_data(k)), copy_frac(pack_samples[k], member_data(k))
        assert abs(cf_alone - cf_pack) <= 3 * math.sqrt(0.25 / 64), (cf_alone, cf_pack)
        assert alone.eval_loss(held[k], seed=5) == pytest.approx(pack_held[k], rel=1e-5)


def test_a_members_draws_do_not_depend_on_its_companions() -> None:
    """The same member (seed, data) at position 0 of one pack and position 2 of another trains identically."""
    mcfg, _ = MCFGS["masked-transformer"]
    cfg = dataclasses.replace(TCFG, steps=12)
    a = Trainer(build_model(mcfg, V, D, S, L, seed=[3, 9]), [member_data(0), member_data(1)], cfg, seeds=[3, 9])
    b = Trainer(build_model(mcfg, V, D, S, L, seed=[4, 5, 3]), [member_data(2), member_data(3), member_data(0)],
                cfg, seeds=[4, 5, 3])
    a.run(), b.run()
    torch.testing.assert_close(a.step_losses[0], b.step_losses[2], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(a.step_losses[0], b.step_losses[0])


# ---------------------------------------------------------------------------------------------- clipping
def test_clipping_is_per_member_global_norm() -> None:
    """Each member's gradients are scaled as `clip_grad_norm_` scales that member's slices alone."""
    mcfg, _ = MCFGS["masked-transformer"]
    tr = Trainer(build_model(mcfg, V, D, S, L, seed=[0, 1, 2]), [member_data(k) for k in range(3)],
                 dataclasses.replace(TCFG, grad_clip=1.0), seeds=[0, 1, 2])
    g = torch.Generator().manual_seed(0)
    scales = [1e-4, 1.0, 100.0]                      # member 0 under the clip, members 1 and 2 over it
    for p in tr.params:
        p.grad = torch.randn(p.shape, generator=g) * torch.tensor(scales).view(3, *[1] * (p.dim() - 1))
    expected = []
    for k in range(3):
        ref = [p.grad[k].clone().requires_grad_() for p in tr.params]
        for r in ref:
            r.grad = r.detach().clone()
        torch.nn.utils.clip_grad_norm_(ref, 1.0)
        expected.append([r.grad for r in ref])
    tr._clip()
    for k in range(3):
        for p, e in zip(tr.params, expected[k]):
            torch.testing.assert_close(p.grad[k], e, rtol=1e-5, atol=1e-7)
    norms = [math.sqrt(sum(float(p.grad[k].square().sum()) for p in tr.params)) for k in range(3)]
    assert norms[0] < 0.1 and norms[1] == pytest.approx(1.0, rel=1e-4) and norms[2] == pytest.approx(1.0, rel=1e-4)


# ---------------------------------------------------------------------------------------------- drop, resume
def _pack(mcfg: ModelConfig, cfg: TrainConfig, members: list[int]) -> Trainer:
    return Trainer(build_model(mcfg, V, D, S, L, seed=[SEEDS[k] for k in members]),
                   [member_data(k) for k in members], cfg, seeds=[SEEDS[k] for k in members],
                   member_ids=[f"trial-{k}" for k in members])


def _evals(log: dict):
    def on_eval(t: Trainer, step: int) -> bool:
        for k, m in enumerate(t.member_ids):
            log.setdefault(m, []).append((step, t.step_losses[k].clone(), t.train_losses[k]))
        return False
    return on_eval


@pytest.mark.parametrize("ema, replacement", [(0.9, False), (0.0, True)])
def test_checkpoint_drop_one_member_and_resume(tmp_path, ema: float, replacement: bool) -> None:
    """A pack of 4 checkpointed at step 10; a retry whose trial-1 has finished resumes trial-0, 2 and 3 from it:
    they continue as in the uninterrupted pack of 4 (losses, EMA samples, held-out losses)."""
    mcfg, _ = MCFGS["masked-transformer"]
    mcfg = dataclasses.replace(mcfg, dropout=0.1)                  # dropout masks come from the members' generators
    cfg = dataclasses.replace(TCFG, steps=40, ema=ema, replacement=replacement, batch_size=4)
    members = [0, 1, 2, 3]
    held = torch.stack([tokens(24, seed=300 + k) for k in members])

    full: dict = {}
    ref = _pack(mcfg, cfg, members)
    ref.run(_evals(full))
    first = _pack(mcfg, cfg, members)
    assert first.run(lambda t, step: step >= 10) == 10
    first.save(tmp_path / "pack.pt")
    assert Trainer.checkpoint_members(tmp_path / "pack.pt") == ["trial-0", "trial-1", "trial-2", "trial-3"]

    torch.manual_seed(1234)                                       # the caller's global RNG must not matter
    retry = _pack(mcfg, cfg, [0, 2, 3])                           # trial-1 is done in the store: left out
    retry.load(tmp_path / "pack.pt")
    assert retry.step == 10 and retry.histories == [first.histories[k] for k in (0, 2, 3)]
    resumed: dict = {}
    retry.run(_evals(resumed))
    for m in ("trial-0", "trial-2", "trial-3"):
        after = [e for e in full[m] if e[0] > 10]
        assert [e[0] for e in after] == [e[0] for e in resumed[m]]
        for (_, l1, m1), (_, l2, m2) in zip(after, resumed[m]):
            torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
            assert m1 == pytest.approx(m2, rel=1e-5)
    torch.testing.assert_close(torch.tensor(retry.eval_losses(held[[0, 2, 3]], seed=1)),
                               torch.tensor(ref.eval_losses(held, seed=1))[[0, 2, 3]], rtol=1e-5, atol=1e-6)
    same = (retry.sample_members(32, 4, [7, 8, 9]) == ref.sample_members(32, 4, [7, 0, 8, 9])[[0, 2, 3]]).all(-1)
    assert same.float().mean() >= 0.95


def test_drop_in_on_eval_shrinks_the_pack_and_the_others_continue() -> None:
    """A member stopped at an evaluation leaves every per-member structure; the others train on unchanged."""
    mcfg, _ = MCFGS["masked-transformer"]
    cfg = dataclasses.replace(TCFG, steps=40)
    full: dict = {}
    _pack(mcfg, cfg, [0, 1, 2]).run(_evals(full))
    part: dict = {}
    tr = _pack(mcfg, cfg, [0, 1, 2])
    log = _evals(part)
    tr.run(lambda t, step: log(t, step) or (t.drop(["trial-1"]) if step == 10 else None) or False)
    assert tr.member_ids == ["trial-0", "trial-2"] and [s for s, *_ in part["trial-1"]] == [10]
    assert all(p.shape[0] == 2 for p in tr.model.parameters())
    assert all(v.shape[0] == 2 for st in tr.opt.state.values() for v in st.values() if v.dim() > 0)
    assert len(tr.rng) == 2 and tr.tokens.shape[0] == 2 and tr.step_losses.shape[0] == 2
    for m in ("trial-0", "trial-2"):
        assert [e[0] for e in full[m]] == [e[0] for e in part[m]]
        for (_, l1, _), (_, l2, _) in zip(full[m], part[m]):
            torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
    tr2 = _pack(mcfg, cfg, [0, 1])                 # when the last members leave, the run ends at that evaluation
    assert tr2.run(lambda t, step: t.drop(t.member_ids) or False) == 10 and tr2.K == 0


def test_compiled_pack_trains_like_eager(monkeypatch) -> None:
    """`compile=True` on a pack, through a drop (the member axis shrinks, so the graph is re-traced): the same
    losses as eager. Dynamo + AOT autograd are exercised with the aot_eager backend (inductor's C++ build takes
    minutes on a small CPU; on CUDA it is the default backend)."""
    orig = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: orig(self, backend="aot_eager"))
    mcfg, _ = MCFGS["masked-transformer"]
    runs = {}
    for compile_ in (False, True):
        cfg = dataclasses.replace(TCFG, steps=20, compile=compile_)
        log: dict = {}
        tr = _pack(mcfg, cfg, [0, 1, 2])
        ev = _evals(log)
        tr.run(lambda t, step: ev(t, step) or (t.drop(["trial-1"]) if step == 10 else None) or False)
        runs[compile_] = log
    for m in ("trial-0", "trial-2"):
        for (_, l1, _), (_, l2, _) in zip(runs[False][m], runs[True][m]):
            torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast and the inductor CUDA backend need a GPU")
def test_cuda_bf16_compiled_pack_member_matches_the_trial_alone() -> None:
    mcfg, _ = MCFGS["masked-transformer"]
    cfg = dataclasses.replace(TCFG, steps=30, device="cuda", bf16=True, compile=True)
    pack = _pack(mcfg, cfg, [0, 1, 2, 3])
    pack.run()
    alone = _pack(mcfg, cfg, [2])
    alone.run()
    torch.testing.assert_close(alone.step_losses[0], pack.step_losses[2], rtol=2e-2, atol=2e-2)
    assert pack.sample_members(16, None, [1, 2, 3, 4]).shape == (4, 16, D)


# ---------------------------------------------------------------------------------------------- memory
class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_in_use() -> int:
    """Bytes the C heap has handed out (glibc's mallinfo2: arena chunks in use plus mmapped blocks)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        pytest.skip("needs glibc >= 2.33 (mallinfo2) to read the heap")
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd


@pytest.mark.parametrize("name", sorted(MCFGS))
def test_memory_estimate_matches_the_heap(name: str) -> None:
    """The activation estimate (extrapolated from batches 1 and 2) against the heap bytes a real forward pass at
    batch 64 holds for backward; weights and optimizer state against a parameter count."""
    mcfg, _ = MCFGS[name]
    model = build_model(mcfg, V, D, S, L, seed=[0, 1])
    est = estimate_memory(model, 64, P_max=100, ema=True)
    x0 = torch.stack([tokens(64, seed=k) for k in range(2)])
    model.loss(x0, MemberRNG([0, 1]))                       # warm-up: one-time allocations are not activations
    before = _heap_in_use()
    loss = model.loss(x0, MemberRNG([0, 1]))
    held = _heap_in_use() - before
    del loss
    assert 0.85 < held / (2 * est.activations) < 1.2, (held, est.activations)
    n_params = sum(p.numel() for p in model.parameters()) // 2
    assert est.params == 4 * n_params and est.optimizer == 4 * 4 * n_params        # grads, 2 moments, EMA
    assert est.data == 100 * D * 8 and est.total == 2 * est.per_member


def test_memory_budget_refuses_a_pack_that_does_not_fit() -> None:
    mcfg, _ = MCFGS["masked-transformer"]
    model = build_model(mcfg, V, D, S, L, seed=list(range(8)))
    data = [member_data(k) for k in range(8)]
    per_member = estimate_memory(model, TCFG.batch_size, max(P_SIZES)).per_member
    budget = int(3.5 * per_member / HEADROOM)                   # room for 3 members, not 4
    with pytest.raises(ValueError, match=r"K=8 members needs about .*GiB.*a pack of at most 3 members fits"):
        Trainer(model, data, TCFG, seeds=SEEDS, memory_budget=budget)
    Trainer(model, data, TCFG, seeds=SEEDS, memory_budget=int(8 * per_member / HEADROOM) + 1)   # fits
    with pytest.raises(ValueError, match="not even one member fits"):
        Trainer(model, data, TCFG, seeds=SEEDS, memory_budget=int(0.5 * per_member))
    with pytest.raises(ValueError, match="memory budget 0 is invalid"):
        Trainer(model, data, TCFG, seeds=SEEDS, memory_budget=0)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("K", [0, -2, 2.5, True, "4"])
def test_pack_size_must_be_a_positive_integer(K) -> None:
    with pytest.raises(ValueError, match=rf"pack size {K!r} is invalid: .*integer number of members >= 1"):
        check_pack_size(K)


def test_bad_packs_are_refused() -> None:
    mcfg, _ = MCFGS["masked-transformer"]
    with pytest.raises(ValueError, match=r"number of seeds 0 is invalid"):
        build_model(mcfg, V, D, S, L, seed=[])
    with pytest.raises(ValueError, match=r"seed -1 is invalid"):
        build_model(mcfg, V, D, S, L, seed=[0, -1])
    model = build_model(mcfg, V, D, S, L, seed=[0, 1, 2])
    data = [member_data(k) for k in range(3)]
    with pytest.raises(ValueError, match=r"member 1's train_tokens has shape \(5, 4\): expected \(P >= 1, d=8\); "
                                         r"the members of a pack share one model shape"):
        Trainer(model, [data[0], tokens(5, seed=0, d=4), data[2]], TCFG, seeds=[0, 1, 2])
    with pytest.raises(ValueError, match=r"train_tokens has 2 entries for a pack of K=3"):
        Trainer(model, data[:2], TCFG, seeds=[0, 1, 2])
    with pytest.raises(ValueError, match=r"seeds=None is invalid: expected one per member"):
        Trainer(model, data, TCFG)
    with pytest.raises(ValueError, match=r"seeds has 2 entries for a pack of K=3"):
        Trainer(model, data, TCFG, seeds=[0, 1])
    with pytest.raises(ValueError, match=r"seed -1 is invalid: member seeds are integers >= 0"):
        Trainer(model, data, TCFG, seeds=[0, -1, 2])
    with pytest.raises(ValueError, match=r"repeat an id"):
        Trainer(model, data, TCFG, seeds=[0, 1, 2], member_ids=["a", "b", "a"])
    tr = Trainer(model, data, TCFG, seeds=[0, 1, 2], member_ids=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"sample is for a lone trial; this pack has K=3 .*sample_members"):
        tr.sample(4)
    with pytest.raises(ValueError, match=r"train_loss is for a lone trial"):
        tr.train_loss
    with pytest.raises(ValueError, match=r"seeds has 2 entries"):
        tr.sample_members(4, None, [1, 2])
    with pytest.raises(ValueError, match=r"tokens has shape \(2, 5, 8\): expected \(K=3, n >= 1, d=8\)"):
        tr.eval_losses(torch.zeros(2, 5, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"cannot drop \['z'\]: not in this pack"):
        tr.drop(["z"])


def test_checkpoint_refuses_other_members(tmp_path) -> None:
    mcfg, _ = MCFGS["masked-transformer"]
    cfg = dataclasses.replace(TCFG, steps=10)
    tr = _pack(mcfg, cfg, [0, 1])
    tr.run()
    tr.save(tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"holds members \['trial-0', 'trial-1'\]; this pack's members \['trial-2'\]"):
        _pack(mcfg, cfg, [0, 2]).load(tmp_path / "c.pt")
    other = Trainer(build_model(mcfg, V, D, S, L, seed=[5]), member_data(0), cfg, seeds=[5], member_ids=["trial-0"])
    with pytest.raises(ValueError, match=r"has seeds \[11\] for members \['trial-0'\], but this pack has seeds \[5\]"):
        other.load(tmp_path / "c.pt")


def test_memory_estimate_leaves_no_graph_behind_a_drop() -> None:
    """The estimate's forward pass must not leak its graph: a leaked graph keeps each parameter's gradient
    accumulator (with the old member count) alive, and training after a `drop` then fails in backward."""
    mcfg = ModelConfig(process="masked", backbone="transformer", width=16, depth=1, heads=2)
    tr = Trainer(build_model(mcfg, V, D, S, L, seed=SEEDS[:4]), [member_data(k) for k in range(4)],
                 dataclasses.replace(TCFG, steps=20), seeds=SEEDS[:4], memory_budget=2 ** 34)
    assert tr.run(lambda t, step: t.drop(["1"] if step == 10 else []) or False) == 20 and tr.K == 3
