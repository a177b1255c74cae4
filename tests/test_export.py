"""The exported supernet (one gate input per layer) computes what the torch supernet computes."""

import numpy as np
import pytest
import torch

from supernets import IMAGE, PRESETS, run, supernet


@pytest.mark.parametrize("preset", PRESETS)
def test_export_has_one_gate_input_per_layer_and_matches_torch(preset):
    net, model = supernet(preset)
    layers = net.gate_layers()
    names = [i.name for i in model.graph.input]
    assert names == ["input"] + [f"gate.{g.name}" for g in layers]
    for inp, layer in zip(model.graph.input[1:], layers):
        assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [layer.size]
    rng = np.random.default_rng(1)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, IMAGE, IMAGE)).astype(np.float32)
        gates = {g.name: (rng.random(g.size) < 0.5).astype(np.float32) for g in layers}
        with torch.no_grad():
            ref = net(torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in gates.items()})
        out = run(model, {"input": x, **{f"gate.{k}": v for k, v in gates.items()}})
        np.testing.assert_allclose(out, ref.numpy(), atol=1e-4, rtol=1e-4)


def test_per_sample_gates_match_per_subnet_gates():
    net, _ = supernet("resnet-tiny")
    x = torch.randn(2, 3, IMAGE, IMAGE)
    g0 = {g.name: (torch.rand(g.size) < 0.5).float() for g in net.gate_layers()}
    g1 = {g.name: (torch.rand(g.size) < 0.5).float() for g in net.gate_layers()}
    batched = {k: torch.stack([g0[k], g1[k]]) for k in g0}
    with torch.no_grad():
        out = net(x, batched)
        torch.testing.assert_close(out[0:1], net(x[0:1], g0))
        torch.testing.assert_close(out[1:2], net(x[1:2], g1))
