"""Assembler: shapes, gate loss, active ratio, MoE gaters, ONNX export equals torch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nnfc.training.assembler import Assembler, active_ratio, gate_loss, limit_encoding
from nnfc.training.bundle_export import export_assembler
from nnfc.training.gating import GateLayer

LAYERS = [GateLayer("layer1.0.conv1", 8, "conv"), GateLayer("layer2.0.conv1", 16, "conv"),
          GateLayer("blocks.0.ffn", 12, "ffn")]


def _inputs(batch=6, attrs=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    task = (torch.rand(batch, attrs, generator=g) > 0.7).float()
    limit = torch.rand(batch, generator=g) * 0.99 + 0.01
    return task, limit


def test_gate_loss_zero_at_or_below_limit():
    limit = torch.tensor([0.1, 0.5, 0.3])
    assert gate_loss(torch.tensor([0.05, 0.5, 0.0]), limit).item() == 0.0
    ratio = torch.tensor([0.2, 0.4, 0.3], requires_grad=True)
    loss = gate_loss(ratio, limit)
    assert loss.item() == pytest.approx(0.1 ** 2 / 3)
    loss.backward()
    # only the sample over its limit gets a gradient, pushing its ratio down
    assert ratio.grad.tolist() == pytest.approx([2 * 0.1 / 3, 0.0, 0.0])


def test_relative_gate_loss():
    limit = torch.tensor([0.02, 0.5])
    assert gate_loss(torch.tensor([0.01, 0.5]), limit, relative=True).item() == 0.0
    loss = gate_loss(torch.tensor([0.03, 0.75]), limit, relative=True)
    assert loss.item() == pytest.approx((0.5 ** 2 + 0.5 ** 2) / 2)


def test_active_ratio_over_all_layers():
    gates = {"a": torch.tensor([[1.0, 1.0, 0.0, 0.0]]), "b": torch.tensor([[1.0] * 6])}
    layers = [GateLayer("a", 4, "conv"), GateLayer("b", 6, "conv")]
    assert active_ratio(gates, layers).tolist() == pytest.approx([0.8])


def test_limit_encoding_shape_and_values():
    enc = limit_encoding(torch.tensor([0.0, 0.5]), 20, 100.0)
    assert enc.shape == (2, 21)
    assert torch.allclose(enc[0, :10], torch.zeros(10)) and torch.allclose(enc[0, 10:20], torch.ones(10))
    assert enc[1, 0].item() == pytest.approx(np.sin(50.0), abs=1e-5)
    assert enc[1, -1].item() == 0.5


@pytest.mark.parametrize("experts, gater_hidden", [(1, 16), (3, 16), (1, 0)])
def test_forward_shapes_and_discrete_eval(experts, gater_hidden):
    torch.manual_seed(0)
    asm = Assembler(17, LAYERS, hidden=32, gater_hidden=gater_hidden, experts=experts)
    task, limit = _inputs()
    asm.train()
    gates = asm(task, limit)
    assert [tuple(gates[l.name].shape) for l in LAYERS] == [(6, 8), (6, 16), (6, 12)]
    asm.eval()
    gates = asm(task, limit)
    for l in LAYERS:
        assert set(gates[l.name].unique().tolist()) <= {0.0, 1.0}
    # training: gradients reach every gater (and the MoE mixer)
    asm.train()
    loss = sum(g.sum() for g in asm(task, limit).values())
    loss.backward()
    assert all(p.grad is not None for p in asm.parameters())


@pytest.mark.parametrize("experts, gater_hidden, depth", [(1, 16, 1), (2, 16, 1), (1, 0, 1),
                                                          (1, 0, 0)])
def test_onnx_equals_torch(tmp_path, experts, gater_hidden, depth):
    torch.manual_seed(1)
    asm = Assembler(17, LAYERS, hidden=32, depth=depth, gater_hidden=gater_hidden,
                    experts=experts)
    # give BN non-trivial running statistics
    asm.train()
    for seed in range(5):
        asm(*_inputs(32, seed=seed))
    path = tmp_path / "assembler.onnx"
    export_assembler(asm, path)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["task", "limit"]
    assert [o.name for o in model.graph.output] == [f"gate.{l.name}" for l in LAYERS]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    asm.eval()
    for batch in (1, 3, 40):  # dynamic batch
        task, limit = _inputs(batch, seed=batch)
        outs = sess.run(None, {"task": task.numpy(), "limit": limit.numpy()})
        with torch.no_grad():
            ref = asm(task, limit)
            scores = asm.scores(task, limit)
        for l, o, s in zip(LAYERS, outs, scores):
            assert o.shape == (batch, l.size) and o.dtype == np.float32
            # equal except where a score sits within float rounding of the threshold
            near = np.abs(s.numpy()) < 1e-5
            assert np.array_equal(o[~near], ref[l.name].numpy()[~near])


def test_cap_keeps_ratio_within_limit(tmp_path):
    torch.manual_seed(2)
    asm = Assembler(17, LAYERS, hidden=32, gater_hidden=16, init_bias=3.0)  # most gates on
    asm.eval()
    task, _ = _inputs(5)
    limit = torch.tensor([0.01, 0.03, 0.1, 0.5, 1.0])
    total = sum(l.size for l in LAYERS)
    ratio = active_ratio(asm(task, limit), LAYERS)
    # never above the limit, except that at least one gate stays on
    assert bool((ratio <= torch.clamp(limit, min=1 / total) + 1e-6).all())
    assert ratio[0].item() == pytest.approx(1 / total)
    assert ratio[2].item() == pytest.approx(3 / total)  # floor(0.1 * 36)
    export_assembler(asm, tmp_path / "a.onnx")
    outs = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"task": task.numpy(), "limit": limit.numpy()})
    onnx_ratio = sum(o.sum(1) for o in outs) / total
    assert np.allclose(onnx_ratio, ratio.numpy())
    uncapped = Assembler(17, LAYERS, hidden=32, gater_hidden=16, init_bias=3.0, cap_at_limit=False)
    uncapped.load_state_dict(asm.state_dict())
    uncapped.eval()
    assert active_ratio(uncapped(task, limit), LAYERS)[0] > 0.5


def test_additive_assembler_composes_attributes():
    """depth = 0 and gater_hidden = 0: scores are a linear map of the multi-hot task plus a term
    of the limit, so the score change from swapping one attribute does not depend on the other
    (what lets unseen attribute combinations get sensible gates)."""
    torch.manual_seed(3)
    asm = Assembler(17, LAYERS, depth=0, gater_hidden=0).eval()
    q1, q2, t1, t2 = 0, 2, 6, 9
    task = torch.zeros(4, 17)
    for row, (q, t) in enumerate([(q1, t1), (q1, t2), (q2, t1), (q2, t2)]):
        task[row, q] = task[row, t] = 1.0
    limit = torch.full((4,), 0.2)
    with torch.no_grad():
        for s in asm.scores(task, limit):
            assert torch.allclose(s[0] - s[1], s[2] - s[3], atol=1e-5)
    deep = Assembler(17, LAYERS, depth=1, gater_hidden=16).eval()
    with torch.no_grad():
        s = torch.cat(deep.scores(task, limit), 1)
    assert not torch.allclose(s[0] - s[1], s[2] - s[3], atol=1e-3)  # the FC+BN+ReLU path mixes


def _assert_onnx_gates_equal_torch(asm, task, limit, path):
    """The exported assembler's gates equal the torch module's (eval mode), exactly."""
    export_assembler(asm, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"task": task.numpy(), "limit": limit.numpy()})
    with torch.no_grad():
        ref = asm(task, limit)
    for l, o in zip(LAYERS, outs):
        assert np.array_equal(o, ref[l.name].numpy())


def test_factorized_assembler_entries_read_one_attribute_group(tmp_path):
    """Every gate entry of a factorized assembler reads one attribute group (entry i: group
    i mod G): changing an attribute of another group leaves its score alone, in torch and in
    the exported ONNX; the mask survives a state-dict round trip."""
    torch.manual_seed(4)
    groups = [list(range(0, 8)), list(range(8, 17))]
    asm = Assembler(17, LAYERS, depth=0, gater_hidden=0, attribute_groups=groups).eval()
    with torch.no_grad():  # every weight non-zero, so only the mask can silence one
        for g in asm.gaters:
            g.experts[0][0].weight.normal_()
    task = torch.zeros(2, 17)
    task[:, 1] = 1.0          # the same colour-like attribute of group 0
    task[0, 9] = 1.0          # and another attribute of group 1 in each row
    task[1, 12] = 1.0
    limit = torch.full((2,), 0.5)
    with torch.no_grad():
        scores = asm.scores(task, limit)
    for s in scores:
        diff = (s[0] - s[1]).abs()
        assert torch.all(diff[0::2] < 1e-6)      # group-0 entries ignore group 1
        assert torch.all(diff[1::2] > 1e-4)      # group-1 entries read it
    assert asm.config["attribute_groups"] == groups
    twin = Assembler(17, LAYERS, depth=0, gater_hidden=0, attribute_groups=groups).eval()
    twin.load_state_dict(asm.state_dict())
    _assert_onnx_gates_equal_torch(twin, task, limit, tmp_path / "f.onnx")
    with pytest.raises(ValueError, match="additive"):
        Assembler(17, LAYERS, depth=1, gater_hidden=0, attribute_groups=groups)


def test_factorized_experts_are_mixed_by_the_limit_alone(tmp_path):
    """Factorized with experts > 1: every expert keeps the attribute groups apart and the
    mixing network reads only the limit, so the scores stay additive in the task attributes at
    every limit while different limits weigh the experts differently; ONNX equals torch."""
    torch.manual_seed(5)
    groups = [list(range(0, 8)), list(range(8, 17))]
    asm = Assembler(17, LAYERS, depth=0, gater_hidden=0, experts=3,
                    attribute_groups=groups).eval()
    with torch.no_grad():
        for g in asm.gaters:
            for e in g.experts:
                e[0].weight.normal_()
            g.mix.weight.normal_()
    task = torch.zeros(4, 17)
    task[:, 1] = 1.0
    task[0::2, 9] = 1.0
    task[1::2, 12] = 1.0
    limit = torch.tensor([0.05, 0.05, 0.6, 0.6])
    with torch.no_grad():
        scores = asm.scores(task, limit)
        enc = torch.cat([task, limit_encoding(limit, asm.limit_dim, asm.limit_scale)], 1)
        g0 = asm.gaters[0]
        mix = torch.softmax(torch.nn.functional.linear(enc, g0.mix.weight * g0.mix_mask,
                                                       g0.mix.bias), 1)
    assert torch.allclose(mix[0], mix[1]) and torch.allclose(mix[2], mix[3])  # task-blind
    assert not torch.allclose(mix[0], mix[2], atol=1e-3)  # limit-routed
    for s in scores:
        assert torch.all((s[0] - s[1]).abs()[0::2] < 1e-5)  # group-0 entries ignore group 1
    _assert_onnx_gates_equal_torch(asm, task, limit, tmp_path / "moe.onnx")


def test_cap_in_training_trains_the_capped_subnet():
    """train.cap_in_training: the supernet sees the gates inference's cap leaves (every sample
    within its limit), the gate loss still sees the assembler's uncapped choice, and gradients
    reach only the scores of kept entries."""
    from nnfc.training.trainer import FactoryNet

    class Recorder(torch.nn.Module):
        def forward(self, x, gates):
            self.gates = gates
            return {"out": sum(g.sum(1) for g in gates.values()) * x.sum()}

    torch.manual_seed(3)
    # additive (no BatchNorm): training and eval scores agree
    asm = Assembler(17, LAYERS, depth=0, gater_hidden=0, init_bias=3.0)  # most gates on
    task, _ = _inputs(4)
    limit = torch.tensor([0.05, 0.1, 0.3, 1.0])
    total = sum(l.size for l in LAYERS)
    net = FactoryNet(Recorder(), asm, hard_fraction=1.0, cap=True)
    net.train()
    out, ratio = net(torch.ones(4, 1), task, limit)
    active = sum(g.sum(1) for g in net.supernet.gates.values())
    assert torch.equal(active, torch.floor(limit * total))  # exactly inference's cap
    assert bool((ratio[:3] > limit[:3]).all())  # uncapped: the gate loss still applies
    asm.eval()
    inference = torch.cat(list(asm(task, limit).values()), 1)
    trained = torch.cat([g.detach() for g in net.supernet.gates.values()], 1)
    assert torch.equal(inference, trained)
    out["out"].sum().backward()
    last = [p for p in asm.parameters() if p.grad is not None]
    assert last, "the kept entries' scores get gradients"
