"""Real architectures nobody here wrote, gated the way a user would gate them, for the passes'
real-architecture tests and ``benchmarks/passes_real_archs.py``.

timm models get random weights and *randomised* norm statistics (timm's default init makes BN an
identity, which would hide constant-carry bugs); a forward hook multiplies the output of every
BatchNorm2d (timm's ``BatchNormAct2d``: after its activation) by a gate over channels, and of
every MLP ``fc1`` (ViT, ConvNeXt) over features. The gated model is exported with gate inputs
``gate.<module>`` by torch's dynamo exporter or the TorchScript exporter.

The *ideal* parameter count a gate vector lets one remove comes from torch-pruning's dependency
groups on the same masks: a channel goes when it is off in every gated layer coupled to it
(residual streams, concatenations); layers whose outputs are ungated data (a DenseNet feature
feeding a gated ``norm1``) keep their filters. Grouped convs, which torch-pruning cannot prune,
keep torch-pruning's groups but lose only equal counts per group (what one ONNX Conv allows).
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from torch import nn

from timm_support import import_timm

logging.getLogger("torch.onnx").setLevel(logging.ERROR)

#: benchmark name -> (timm model name, create_model kwargs, input size)
ARCHS: dict[str, tuple[str, dict, int]] = {
    "resnet18": ("resnet18", {}, 64),
    "resnet50": ("resnet50", {}, 64),
    "resnext26ts": ("resnext26ts", {}, 64),
    "regnetx_002": ("regnetx_002", {}, 64),
    "mobilenetv2_050": ("mobilenetv2_050", {}, 64),
    "mobilenetv3_small_050": ("mobilenetv3_small_050", {}, 64),
    "efficientnet_b0": ("efficientnet_b0", {}, 64),
    "tinynet_a": ("tinynet_a", {}, 64),
    "ghostnet_050": ("ghostnet_050", {}, 64),
    "densenet121": ("densenet121", {}, 64),
    "repvgg_a0": ("repvgg_a0", {}, 64),
    "convnext_atto": ("convnext_atto", {}, 64),
    "convnext_atto_ols": ("convnext_atto_ols", {"conv_mlp": True}, 64),
    "vit_tiny": ("vit_tiny_patch16_224", {"img_size": 64}, 64),
    "deit_tiny": ("deit_tiny_patch16_224", {"img_size": 64}, 64),
    "mobilevit_xxs": ("mobilevit_xxs", {}, 64),
}


@dataclass
class GatedArch:
    net: nn.Module
    gates: dict[str, tuple[nn.Module, int, int]]   # gate input -> (module, size, channel axis)
    input_size: int
    producers: set[nn.Module] = field(default_factory=set)  # conv/linear whose output is gated
    graph: object = None  # torch-pruning's DependencyGraph, built on first use


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, norm affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / max(1, p[0].numel()) ** 0.5
                                                            if p.ndim > 1 else 0.3))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.add_(1.0)
    return net.eval()


class _Gated(nn.Module):
    """``net`` with positional gate inputs read by forward hooks."""

    def __init__(self, arch: GatedArch):
        super().__init__()
        self.net = arch.net
        self.current: list[torch.Tensor] = []
        self.handles = [module.register_forward_hook(self._hook(i, axis))
                        for i, (module, _, axis) in enumerate(arch.gates.values())]

    def _hook(self, i: int, axis: int):
        def hook(module, args, out):
            g = self.current[i]
            shape = [1] * out.dim()
            shape[axis] = -1
            return out * g.view(shape)
        return hook

    def forward(self, x, *gates):
        self.current = list(gates)
        return self.net(x)


def build(name: str, seed: int = 0) -> GatedArch:
    timm = import_timm()
    model_name, kwargs, size = ARCHS[name]
    net = randomize(timm.create_model(model_name, pretrained=False, num_classes=10, **kwargs),
                    seed)
    gates: dict[str, tuple[nn.Module, int, int]] = {}
    for mod_name, m in net.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            gates[f"gate.{mod_name}"] = (m, m.num_features, 1)
        elif mod_name.endswith("fc1") and isinstance(m, nn.Linear):
            gates[f"gate.{mod_name}"] = (m, m.out_features, -1)
        elif mod_name.endswith("fc1") and isinstance(m, nn.Conv2d) and "se" not in mod_name:
            gates[f"gate.{mod_name}"] = (m, m.out_channels, 1)
    arch = GatedArch(net, gates, size)
    arch.producers = _gated_producers(arch)
    return arch


def _gated_producers(arch: GatedArch) -> set[nn.Module]:
    """Conv/Linear layers whose output a gate multiplies directly (or through its BN)."""
    outputs: dict[int, nn.Module] = {}
    gated_inputs: set[int] = set()
    alive: list[torch.Tensor] = []  # keep tensors alive so their ids are not reused
    gated = {m for m, _, _ in arch.gates.values()}
    handles = []
    for m in arch.net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(
                lambda mod, a, out: alive.append(out) or outputs.__setitem__(id(out), mod)))
        if m in gated:
            handles.append(m.register_forward_hook(
                lambda mod, a, out: gated_inputs.add(id(a[0]))))
    with torch.no_grad():
        arch.net(torch.randn(1, 3, arch.input_size, arch.input_size))
    for h in handles:
        h.remove()
    found = {outputs[i] for i in gated_inputs if i in outputs}
    return found | {m for m in gated if isinstance(m, (nn.Conv2d, nn.Linear))}


def torch_export(module: nn.Module, example: tuple, input_names: list[str],
                 output_names: list[str], dynamo: bool = True) -> onnx.ModelProto:
    """``module`` exported at opset 18 by torch's dynamo or TorchScript exporter."""
    kwargs = dict(input_names=input_names, output_names=output_names, opset_version=18,
                  dynamo=dynamo)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            return torch.onnx.export(module, example, **kwargs).model_proto
        buf = io.BytesIO()
        torch.onnx.export(module, example, buf, **kwargs)
        return onnx.load_from_string(buf.getvalue())


def export(arch: GatedArch, dynamo: bool = True) -> onnx.ModelProto:
    wrapper = _Gated(arch).eval()
    example = (torch.randn(1, 3, arch.input_size, arch.input_size),
               *[torch.ones(s) for _, s, _ in arch.gates.values()])
    try:
        model = torch_export(wrapper, example, ["x", *arch.gates], ["logits"], dynamo)
    finally:
        for h in wrapper.handles:
            h.remove()
    # an exporter may drop a gate input nothing reads; the gate contract needs them all
    names = {i.name for i in model.graph.input}
    missing = [g for g in arch.gates if g not in names]
    if missing:
        raise RuntimeError(f"exporter dropped gate inputs: {missing[:3]}")
    return model


def gate_sets(arch: GatedArch, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The benchmark's gate vectors: random 50 %, random 25 % kept, and one layer all off."""
    rng = np.random.default_rng(seed)
    sets = {}
    for label, p in (("random50", 0.5), ("random25", 0.25)):
        gates = {}
        for name, (_, size, _) in arch.gates.items():
            g = (rng.random(size) < p).astype(np.float32)
            g[rng.integers(size)] = 1
            gates[name] = g
        sets[label] = gates
    ones = {n: np.ones(s, np.float32) for n, (_, s, _) in arch.gates.items()}
    layer = list(arch.gates)[len(arch.gates) // 2]
    ones[layer] = np.zeros_like(ones[layer])
    sets["layer_off"] = ones
    return sets


def ideal_removed(arch: GatedArch, gates: dict[str, np.ndarray]) -> int:
    """Parameters (BN running statistics included, as in ONNX) the masks let one remove."""
    import torch_pruning as tp

    if arch.graph is None:
        example = torch.randn(1, 3, arch.input_size, arch.input_size)
        arch.graph = tp.DependencyGraph().build_dependency(arch.net, example_inputs=example)
    dg = arch.graph
    by_module = {m: gates[n] for n, (m, _, _) in arch.gates.items()}
    removed_out: dict[nn.Module, set[int]] = {}
    removed_in: dict[nn.Module, set[int]] = {}
    for name, (module, size, _) in arch.gates.items():
        if module not in dg.module2node:
            continue
        fn = tp.prune_batchnorm_out_channels if isinstance(module, nn.BatchNorm2d) else (
            tp.prune_linear_out_channels if isinstance(module, nn.Linear)
            else tp.prune_conv_out_channels)
        cand = set(np.flatnonzero(gates[name] == 0).tolist())
        group = None
        while cand:
            group = dg.get_pruning_group(module, fn, idxs=sorted(cand))
            drop = set()
            for item in group:
                mod = item.dep.target.module
                if mod in by_module and item.dep.handler.__name__ == "prune_out_channels":
                    g = by_module[mod]
                    drop |= {r for i, r in zip(item.idxs, item.root_idxs)
                             if r is not None and i < g.size and g[i] != 0}
                if _is_grouped(mod):  # one ONNX Conv: equal counts per group
                    drop |= _unequal(mod, item.dep.handler.__name__, item.idxs, item.root_idxs)
            if not drop & cand:
                break
            cand -= drop
        if not cand or group is None:
            continue
        for item in group:
            mod, handler = item.dep.target.module, item.dep.handler.__name__
            if not isinstance(mod, (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm)):
                continue
            if handler == "prune_out_channels" and isinstance(mod, (nn.Conv2d, nn.Linear)) \
                    and mod not in arch.producers and not _is_depthwise(mod):
                continue  # its output is data elsewhere: only its consumers shrink
            target = removed_out if handler == "prune_out_channels" else removed_in
            target.setdefault(mod, set()).update(item.idxs)
    total = 0
    for mod in set(removed_out) | set(removed_in):
        ro, ri = len(removed_out.get(mod, ())), len(removed_in.get(mod, ()))
        total += _removed_params(mod, ro, ri, removed_out.get(mod, set()) |
                                 removed_in.get(mod, set()))
    return total


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == \
        m.out_channels


def _is_grouped(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and 1 < m.groups and not _is_depthwise(m)


def _unequal(mod: nn.Conv2d, handler: str, idxs, roots) -> set[int]:
    """Root indices beyond the count every group of a grouped conv can lose."""
    total = mod.in_channels if handler == "prune_in_channels" else mod.out_channels
    per = total // mod.groups
    group_of = np.asarray(idxs) // per
    counts = np.bincount(group_of, minlength=mod.groups)
    k = min(int(counts.min()), per - 1)
    extra, seen = set(), {}
    for i, r, g in zip(idxs, roots, group_of):
        seen[g] = seen.get(g, 0) + 1
        if seen[g] > k and r is not None:
            extra.add(r)
    return extra


def _removed_params(mod: nn.Module, ro: int, ri: int, both: set[int]) -> int:
    if isinstance(mod, nn.BatchNorm2d):
        return 4 * len(both)
    if isinstance(mod, nn.LayerNorm):
        return 2 * len(both)
    if isinstance(mod, nn.Linear):
        o, i = mod.out_features, mod.in_features
        bias = o if mod.bias is not None else 0
        return o * i - (o - ro) * (i - ri) + (ro if bias else 0)
    o, i, k = mod.out_channels, mod.in_channels, mod.kernel_size[0] * mod.kernel_size[1]
    bias = mod.bias is not None
    if _is_depthwise(mod):
        return len(both) * k + (len(both) if bias else 0)
    g = mod.groups  # grouped: every group loses ro/g filters and ri/g input columns
    return k * (o * (i // g) - (o - ro) * ((i - ri) // g)) + (ro if bias else 0)
