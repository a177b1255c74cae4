"""Improved SemHash: forward values, straight-through gradient, training mix, discrete eval."""

import torch

from nnfc.training.semhash import hard_gate, semhash, soft_gate, straight_through


def test_forward_values():
    v = torch.tensor([-10.0, -0.5, 0.0, 0.5, 10.0])
    expected_soft = torch.clamp(1.2 * torch.sigmoid(v) - 0.1, 0, 1)
    assert torch.allclose(soft_gate(v), expected_soft)
    assert soft_gate(v)[0] == 0.0 and soft_gate(v)[-1] == 1.0  # clamped
    assert torch.equal(hard_gate(v), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]))
    # hard gate == (soft gate > 0.5)
    assert torch.equal(hard_gate(v), (soft_gate(v) > 0.5).float())
    assert torch.equal(straight_through(v), hard_gate(v))


def test_straight_through_gradient_is_soft_gradient():
    v = torch.tensor([-1.0, -0.2, 0.3, 2.0, 5.0], requires_grad=True)
    straight_through(v).sum().backward()
    g_st = v.grad.clone()
    v.grad = None
    soft_gate(v).sum().backward()
    assert torch.allclose(g_st, v.grad)
    s = torch.sigmoid(v.detach())
    expected = 1.2 * s * (1 - s) * ((1.2 * s - 0.1 > 0) & (1.2 * s - 0.1 < 1)).float()
    assert torch.allclose(g_st, expected)
    assert g_st[-1] == 0.0  # clamped region has no gradient


def test_training_mixes_hard_and_soft_per_sample():
    torch.manual_seed(0)
    v = torch.randn(400, 6)
    g = semhash(v, training=True)
    hard_rows = (g == hard_gate(v)).all(1)
    soft_rows = torch.isclose(g, soft_gate(v)).all(1)
    assert bool((hard_rows | soft_rows).all())
    assert 0.4 < hard_rows.float().mean() < 0.6  # a random half
    assert torch.equal(semhash(v, training=True, hard_fraction=1.0), hard_gate(v))


def test_eval_is_discrete():
    v = torch.randn(8, 5)
    g = semhash(v, training=False)
    assert set(g.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(g, (v > 0).float())
