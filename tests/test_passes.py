"""The central property: a pruned artifact reproduces the gated supernet (ORT vs ORT)."""

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnfc.passes.errors import PruneError
from nnfc.onnx_io import count_params
from onnx_ir.passes import functionalize

from nnfc.passes import (BindGatesPass, FoldGateConstantsPass, PruneGatedChannelsPass,
                         RemoveIdentityGatesPass, RemoveUnusedPass, apply_gates,
                         apply_gates_with_report)
from supernets import IMAGE, PRESETS, predicted_params, run, supernet

ATOL = 1e-5


def _check(preset: str, gates: dict[str, np.ndarray], seed: int = 0) -> onnx.ModelProto:
    net, model = supernet(preset)
    pruned = apply_gates(model, gates)
    assert not [i.name for i in pruned.graph.input if i.name.startswith("gate.")]
    onnx.checker.check_model(pruned)
    x = np.random.default_rng(seed).standard_normal((2, 3, IMAGE, IMAGE)).astype(np.float32)
    ref = run(model, {"input": x, **gates})
    out = run(pruned, {"input": x})
    assert np.max(np.abs(out - ref)) <= ATOL * max(1.0, float(np.abs(ref).max()))
    assert count_params(pruned) == predicted_params(net, model, gates)
    return pruned


def _layers(preset):
    return [(f"gate.{g.name}", g.size) for g in supernet(preset)[0].gate_layers()]


@st.composite
def gate_vectors(draw, preset):
    """Random 0/1 gates; each layer draws its own density, so all-0/all-1 layers occur."""
    gates = {}
    for name, size in _layers(preset):
        density = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
        seed = draw(st.integers(0, 2**31 - 1))
        gates[name] = (np.random.default_rng(seed).random(size) < density).astype(np.float32)
    return gates


@pytest.mark.parametrize("preset", PRESETS)
def test_random_gates_pruned_equals_supernet(preset):
    @settings(max_examples=12, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(gate_vectors(preset))
    def check(gates):
        _check(preset, gates)

    check()


@pytest.mark.parametrize("preset", PRESETS)
def test_all_ones_is_the_supernet_without_gate_inputs(preset):
    gates = {name: np.ones(size, np.float32) for name, size in _layers(preset)}
    pruned = _check(preset, gates)
    assert count_params(pruned) == count_params(supernet(preset)[1])
    gathers = lambda m: sum(n.op_type == "Gather" for n in m.graph.node)  # noqa: E731
    assert gathers(pruned) == gathers(supernet(preset)[1])


@pytest.mark.parametrize("preset", PRESETS)
def test_all_zeros_in_one_layer_still_exact_and_runnable(preset):
    layers = _layers(preset)
    for zero in range(len(layers)):
        gates = {name: np.ones(size, np.float32) for name, size in layers}
        gates[layers[zero][0]][:] = 0
        _check(preset, gates)


@pytest.mark.parametrize("preset", PRESETS)
def test_single_active_channel(preset):
    gates = {}
    for i, (name, size) in enumerate(_layers(preset)):
        gates[name] = np.zeros(size, np.float32)
        gates[name][(7 * i + 3) % size] = 1
    _check(preset, gates)


def test_pruning_shrinks_convs_physically():
    net, model = supernet("resnet-tiny")
    gates = {name: (np.arange(size) % 4 == 0).astype(np.float32)
             for name, size in _layers("resnet-tiny")}
    pruned = _check("resnet-tiny", gates)
    shapes = {tuple(i.dims) for i in pruned.graph.initializer}
    assert (2, 8, 3, 3) in shapes        # first block conv1: 8 -> 2 filters over the 8-channel stem
    assert (8, 2, 3, 3) in shapes        # its conv2 reads 2 input channels
    assert not any(n.op_type == "Mul" for n in pruned.graph.node)


def test_gate_that_also_feeds_a_residual_is_gathered_not_dropped():
    # mobilenet-tiny's first block has no expansion: the gate reaches back through the depthwise
    # conv to the stem, whose output also feeds the residual add.
    gates = {name: np.ones(size, np.float32) for name, size in _layers("mobilenet-tiny")}
    gates["gate.blocks.0"][::2] = 0
    pruned, reports = apply_gates_with_report(supernet("mobilenet-tiny")[1], gates)
    assert any(n.op_type == "Gather" for n in pruned.graph.node)
    report = next(r for r in reports if r.gate == "gate.blocks.0")
    assert report.kept == 4 and report.notes
    _check("mobilenet-tiny", gates)


# --- each pass on its own keeps the model equivalent -------------------------------------

def _half_gates(preset):
    return {name: (np.arange(size) % 2).astype(np.float32) for name, size in _layers(preset)}


@pytest.mark.parametrize("preset", ["efficientnet-tiny", "vit-tiny"])
def test_each_pass_preserves_outputs(preset):
    _, model = supernet(preset)
    gates = _half_gates(preset)
    x = np.random.default_rng(3).standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32)
    ref = run(model, {"input": x, **gates})
    graph_model = ir.from_proto(model)
    steps = [BindGatesPass(gates), FoldGateConstantsPass(), PruneGatedChannelsPass(),
             RemoveIdentityGatesPass(), RemoveUnusedPass()]
    for step in steps:
        graph_model = functionalize(step)(graph_model).model  # each pass on a copy
        out = run(ir.to_proto(graph_model), {"input": x})
        np.testing.assert_allclose(out, ref, atol=ATOL)


def test_bind_gates_removes_gate_inputs_only():
    _, model = supernet("vit-tiny")
    graph_model = BindGatesPass(_half_gates("vit-tiny"))(ir.from_proto(model)).model
    assert [v.name for v in graph_model.graph.inputs] == ["input"]


def test_fold_constants_turns_gate_reshapes_into_tagged_initializers():
    _, model = supernet("resnet-tiny")
    bound = BindGatesPass(_half_gates("resnet-tiny"))(ir.from_proto(model)).model
    graph_model = FoldGateConstantsPass()(bound).model
    assert not any(n.op_type == "Reshape" and n.inputs[0].const_value is not None
                   for n in graph_model.graph)
    tagged = [v for v in graph_model.graph.initializers.values()
              if v.metadata_props.get("nnfc.gate") and v.uses()]
    assert {tuple(v.shape) for v in tagged} == {(1, 8, 1, 1), (1, 16, 1, 1)}


# --- input validation ---------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    ({"gate.nope": [1]}, "unknown gate 'gate.nope'"),
    ({"gate.layer1.0.conv1": [1] * 7}, "has 7 values; the model expects 8"),
    ({"gate.layer1.0.conv1": [1] * 7 + [0.5]}, "only 0 and 1"),
    ({"gate.layer1.0.conv1": [1] * 8}, "no values for gate(s) gate.layer2.0.conv1"),
])
def test_bad_gates_are_one_clear_error(bad, message):
    _, model = supernet("resnet-tiny")
    full = {"gate.layer2.0.conv1": np.ones(16)} if "layer2" not in message else {}
    with pytest.raises(PruneError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_gates(model, {**full, **{k: np.asarray(v) for k, v in bad.items()}})
