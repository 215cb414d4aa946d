"""Tests for `models`: shapes, samplers, bad input, loss decrease, memorization, checkpoint/resume equivalence."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from models import (MemberRNG, ModelConfig, TrainConfig, Trainer, TreeConv, Transformer, UniformDiffusion,
                    build_model, eval_schedule)

torch.set_num_threads(1)

V, D, S, L = 8, 8, 2, 3


def tokens(n: int, v: int = V, d: int = D, seed: int = 1) -> torch.Tensor:
    return torch.randint(v, (n, d), generator=torch.Generator().manual_seed(seed))


def copy_frac(x: torch.Tensor, train: torch.Tensor) -> float:
    return (x[:, None, :] == train[None]).all(-1).any(-1).float().mean().item()


# ---------------------------------------------------------------------------------------------- shapes, samplers
@pytest.mark.parametrize("time_cond", [True, False])
def test_backbone_shapes(time_cond: bool) -> None:
    x, t = tokens(10, v=9, d=9).view(2, 5, 9), torch.rand(2, 5)          # a pack of K=2 members, 5 strings each
    tr = Transformer(n_in=9, v=7, d=9, width=32, depth=2, heads=4, time_cond=time_cond, K=2)
    tc = TreeConv(n_in=9, v=7, s=3, L=2, width=32, depth=2, time_cond=time_cond, K=2)
    assert tr(x, t).shape == (2, 5, 9, 7)
    assert tc(x, t).shape == (2, 5, 9, 7)


def test_tree_conv_receptive_field_follows_tree() -> None:
    """Changing one leaf changes outputs everywhere via the root, but the net is built from s-blocks: with the
    root path cut (L=1 down/up), outputs in another subtree do not depend on it; here we check the U-Net skip
    structure keeps position-specific outputs (no global pooling): different positions give different logits."""
    net = TreeConv(n_in=V, v=V, s=S, L=L, width=16, depth=1, time_cond=False)
    x = tokens(2)[None]
    out = net(x, torch.zeros(1, 2))[0]
    assert not torch.allclose(out[:, 0], out[:, 1])


@pytest.mark.parametrize("process", ["masked", "uniform"])
@pytest.mark.parametrize("backbone", ["transformer", "tree_conv"])
def test_model_loss_and_sampler(process: str, backbone: str) -> None:
    m = build_model(ModelConfig(process=process, backbone=backbone, width=16, heads=2), V, D, S, L, seed=0)
    loss = m.loss(tokens(4)[None], MemberRNG([0]))
    assert loss.shape == (1,) and torch.isfinite(loss).all() and loss.item() > 0
    for steps in (1, 3, None):
        x = m.sample(16, steps, MemberRNG([0]))
        assert x.shape == (1, 16, D) and x.dtype == torch.long
        assert int(x.min()) >= 0 and int(x.max()) < V          # no mask token (id V) left, only symbols
    a = m.sample(8, 4, MemberRNG([3]))
    b = m.sample(8, 4, MemberRNG([3]))
    assert torch.equal(a, b)


def test_build_model_seed_is_deterministic() -> None:
    cfg = ModelConfig()
    a, b = build_model(cfg, V, D, S, L, seed=5), build_model(cfg, V, D, S, L, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_uniform_posterior_exact_prediction_has_zero_kl() -> None:
    """With the true x0 as prediction the predicted posterior equals the true one; posteriors are normalised."""
    m = build_model(ModelConfig(process="uniform", width=16, heads=2), V, D, S, L)
    assert isinstance(m, UniformDiffusion)
    x0, xt = tokens(4), tokens(4, seed=2)
    log_x0 = torch.where(torch.nn.functional.one_hot(x0, V).bool(), 0.0, -1e30)
    a_t, a_s = m.abar[torch.tensor([5, 50, 99, 100])], m.abar[torch.tensor([4, 49, 98, 0])]
    lp = m._log_posterior(xt, log_x0, a_t, a_s)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(4, D), atol=1e-5)
    # at s = 0 the posterior is the one-hot x0
    assert torch.equal(lp[3].argmax(-1), x0[3]) and torch.allclose(lp[3].exp().max(-1).values, torch.ones(D))


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, words", [
    (dict(process="gaussian"), ["gaussian", "masked", "uniform"]),
    (dict(backbone="mlp"), ["mlp", "transformer", "tree_conv"]),
    (dict(width=30, heads=4), ["width=30", "heads=4"]),
    (dict(width=0), ["width=0", ">= 1"]),
    (dict(dropout=1.0), ["dropout", "[0, 1)"]),
])
def test_model_config_errors(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ValueError) as e:
        ModelConfig(**kwargs)
    assert all(w in str(e.value) for w in words)


@pytest.mark.parametrize("kwargs, words", [
    (dict(steps=0), ["steps=0", ">= 1"]),
    (dict(steps=10, lr=0.0), ["lr=0.0", "> 0"]),
    (dict(steps=10, lr=-1e-3), ["lr=-0.001"]),
    (dict(steps=10, batch_size=0), ["batch_size=0", ">= 1"]),
    (dict(steps=10, ema=1.0), ["ema=1.0", "[0, 1)"]),
    (dict(steps=10, device="tpu"), ["tpu", "cuda"]),
    (dict(steps=10, bf16=True), ["bf16", "CUDA"]),
])
def test_train_config_errors(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ValueError) as e:
        TrainConfig(**kwargs)
    assert all(w in str(e.value) for w in words)


def test_build_model_errors() -> None:
    with pytest.raises(ValueError, match=r"d=9 .*2\*\*3 = 8"):
        build_model(ModelConfig(backbone="tree_conv"), V, 9, 2, 3)
    with pytest.raises(ValueError, match="v=1"):
        build_model(ModelConfig(), 1, D, S, L)


def test_trainer_errors() -> None:
    m = build_model(ModelConfig(width=16, heads=2), V, D, S, L)
    with pytest.raises(ValueError, match=r"batch_size=16 .*P=6.*<= 6"):
        Trainer(m, tokens(6), TrainConfig(steps=10, batch_size=16, replacement=False))
    with pytest.raises(ValueError, match=r"\[0, 9\].*v=8"):
        Trainer(m, tokens(6, v=10).clamp(max=9), TrainConfig(steps=10))
    with pytest.raises(ValueError, match=r"shape \(6, 4\)"):
        Trainer(m, tokens(6, d=4), TrainConfig(steps=10))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Trainer(m, tokens(6), TrainConfig(steps=10, device="cuda"))


def test_eval_schedule() -> None:
    sched = eval_schedule(1000, 4, 10)
    assert sched[0] == 10 and sched[-1] == 1000 and sched == sorted(set(sched))
    assert sched == [10, 18, 32, 56, 100, 178, 316, 562, 1000]
    assert eval_schedule(5, 8, 10) == [5]
    assert eval_schedule(12, 100, 1)[:3] == [1, 2, 3]              # rounding collisions removed
    with pytest.raises(ValueError, match="evals_per_decade=0"):
        eval_schedule(10, 0, 1)


# ---------------------------------------------------------------------------------------------- training
def test_loss_decreases_and_callback_stops() -> None:
    train = tokens(8)
    for process in ("masked", "uniform"):
        m = build_model(ModelConfig(process=process, width=32, heads=2), V, D, S, L, seed=0)
        tr = Trainer(m, train, TrainConfig(steps=200, batch_size=32, lr=3e-3, evals_per_decade=2, first_eval=20))
        seen: list[int] = []
        final = tr.run(lambda t, step: seen.append(step) or False)
        assert final == 200 and seen == tr.schedule == [20, 63, 200]
        first, last = tr.history[0][1], tr.history[-1][1]
        assert last < 0.7 * first, (process, tr.history)
        assert tr.losses.shape == (137,) and abs(tr.train_loss - tr.losses.double().mean().item()) < 1e-9
        # early stop: the callback returning True ends the run at that evaluation
        tr2 = Trainer(build_model(ModelConfig(process=process, width=16, heads=2), V, D, S, L), train,
                      TrainConfig(steps=200, evals_per_decade=2, first_eval=20))
        assert tr2.run(lambda t, step: step >= 63) == 63 and tr2.step == 63


def test_a_segment_holds_no_step_outputs_at_its_evaluation() -> None:
    """The steps between two evaluations leave no per-step tensor alive when the evaluation runs: each step's
    losses are copied into one buffer (a list of the compiled step's outputs held ~0.7 MB per step, 7 GB per pack
    over a late segment: benchmarks/step_memory.py). The losses themselves are kept exactly."""
    import weakref

    m = build_model(ModelConfig(width=16, heads=2), V, D, S, L, seed=0)
    tr = Trainer(m, tokens(8), TrainConfig(steps=60, batch_size=8, evals_per_decade=2, first_eval=20))
    outputs: list[weakref.ref] = []
    values: list[torch.Tensor] = []
    step = tr._train_step

    def tracked() -> torch.Tensor:
        out = step()
        outputs.append(weakref.ref(out))
        values.append(out.clone())
        return out

    tr._train_step = tracked
    alive: list[int] = []
    tr.run(lambda t, s: alive.append(sum(r() is not None for r in outputs)) or False)
    assert len(outputs) == 60 and alive == [0, 0]
    torch.testing.assert_close(tr.step_losses, torch.stack(values[20:], dim=1), rtol=0, atol=0)


def _memorize(process: str, backbone: str, steps: int, sample_steps: int | None) -> float:
    train = tokens(6, seed=11)
    m = build_model(ModelConfig(process=process, backbone=backbone, width=64, depth=2, heads=4), V, D, S, L, seed=0)
    tr = Trainer(m, train, TrainConfig(steps=steps, batch_size=64, lr=3e-3, evals_per_decade=1))
    tr.run()
    assert tr.history[-1][1] < 0.5 * tr.history[0][1]
    return copy_frac(tr.sample(128, sample_steps, seed=0), train)


def test_masked_diffusion_memorizes() -> None:
    # steps=None: the exact one-token-per-event sampler (a K-step grid sampler with K ~ d draws coupled tokens
    # independently in the same step, which caps the copy rate even of a perfect memorizer). 2,500 steps: at 1,500
    # the copy rate sat at the threshold (0.89 on one CPU, above 0.9 on another) and gave a test that hinged on the
    # machine's floating point; trained to 2,500 the model copies every sample.
    assert _memorize("masked", "transformer", steps=2500, sample_steps=None) > 0.9


def test_uniform_diffusion_memorizes() -> None:
    assert _memorize("uniform", "tree_conv", steps=700, sample_steps=None) > 0.9


# ---------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("process, backbone, ema, replacement", [
    ("masked", "transformer", 0.9, False),
    ("uniform", "tree_conv", 0.0, True),
])
def test_resume_is_bit_identical(tmp_path, process: str, backbone: str, ema: float, replacement: bool) -> None:
    train = tokens(12)
    mcfg = ModelConfig(process=process, backbone=backbone, width=16, heads=2, dropout=0.1)
    tcfg = TrainConfig(steps=40, batch_size=8, lr=3e-3, ema=ema, evals_per_decade=4, first_eval=5, seed=3,
                       replacement=replacement)
    held = tokens(16, seed=7)

    def record(log: list):
        def on_eval(t: Trainer, step: int) -> bool:
            log.append((step, t.losses.clone(), t.sample(8, 4, seed=1), t.eval_loss(held)))
            return False
        return on_eval

    full: list = []
    Trainer(build_model(mcfg, V, D, S, L, seed=0), train, tcfg).run(record(full))

    part: list = []
    k = 16
    a = Trainer(build_model(mcfg, V, D, S, L, seed=0), train, tcfg)
    assert a.run(lambda t, step: record(part)(t, step) or step >= k) == k
    a.save(tmp_path / "ckpt.pt")
    torch.manual_seed(1234)                                    # the caller's global RNG must not matter
    b = Trainer(build_model(mcfg, V, D, S, L, seed=99), train, tcfg)
    b.load(tmp_path / "ckpt.pt")
    assert b.step == k and b.history == a.history
    b.run(record(part))

    assert [p[0] for p in part] == [f[0] for f in full]
    for (s1, l1, x1, e1), (s2, l2, x2, e2) in zip(full, part):
        assert torch.equal(l1, l2), (s1, l1, l2)
        assert torch.equal(x1, x2) and e1 == e2


def test_checkpoint_is_weights_only_loadable(tmp_path) -> None:
    m = build_model(ModelConfig(width=16, heads=2), V, D, S, L)
    tr = Trainer(m, tokens(6), TrainConfig(steps=5, ema=0.5))
    tr.run()
    tr.save(tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["step"] == 5 and state["config"] == dataclasses.asdict(tr.cfg)
    assert state["members"] == ["0"] and isinstance(state["gens"][0], torch.Tensor)
