"""Test/benchmark helpers for the compiler: a factory bundle with a real exported gated supernet and
a rule-based assembler built directly in ONNX (same contract as a trained one).

Assembler rule: each (attribute, layer) has a random permutation of per-channel thresholds
k/size; a task's threshold is the mean over its attributes, shifted so its lowest channel is 0;
``gate = limit >= threshold``. So the active ratio grows monotonically with the limit, differs per
task, and every layer keeps at least one channel.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnfc.bundle import Bundle, write_bundle

ATTRIBUTES = ["only-one", "only-two", "only-three", "odd", "even", "zero", "five", "seven"]
SEEN = [["only-one", "odd"], ["only-two", "even"], ["only-three", "five"], ["only-two", "odd"],
        ["only-one", "zero"], ["only-three", "seven"], ["odd"], ["even"], ["only-two", "seven"]]
UNSEEN = [["only-one", "even"], ["only-three", "odd"], ["only-two", "five"]]


def rule_assembler(gate_layers: list[tuple[str, int]], num_attributes: int, seed: int = 0
                   ) -> onnx.ModelProto:
    """An assembler ONNX: inputs task [B, A], limit [B]; outputs gate.<layer> [B, size] 0/1."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("ReduceSum", ["task", "axes1"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "one"], ["count_safe"]),
        helper.make_node("Unsqueeze", ["limit", "axes1"], ["limit2"]),
    ]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes1"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    outputs = []
    for name, size in gate_layers:
        thr = np.stack([rng.permutation(size) / size for _ in range(num_attributes)])
        t = f"thr.{name}"
        inits.append(numpy_helper.from_array(thr.astype(np.float32), t))
        nodes += [
            helper.make_node("MatMul", ["task", t], [f"{t}.sum"]),
            helper.make_node("Div", [f"{t}.sum", "count_safe"], [f"{t}.mean"]),
            helper.make_node("ReduceMin", [f"{t}.mean", "axes1"], [f"{t}.min"], keepdims=1),
            helper.make_node("Sub", [f"{t}.mean", f"{t}.min"], [f"{t}.shift"]),
            helper.make_node("GreaterOrEqual", ["limit2", f"{t}.shift"], [f"{t}.on"]),
            helper.make_node("Cast", [f"{t}.on"], [f"gate.{name}"], to=TensorProto.FLOAT),
        ]
        outputs.append(helper.make_tensor_value_info(f"gate.{name}", TensorProto.FLOAT,
                                                     ["B", size]))
    graph = helper.make_graph(
        nodes, "rule_assembler",
        [helper.make_tensor_value_info("task", TensorProto.FLOAT, ["B", num_attributes]),
         helper.make_tensor_value_info("limit", TensorProto.FLOAT, ["B"])],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def make_bundle(root: str | Path, preset: str = "resnet-tiny", image_shape=(3, 16, 16),
                seed: int = 0, **config) -> Bundle:
    """Export ``preset`` (random weights) and a rule assembler into a bundle at ``root``."""
    import torch

    from nnfc.training.backbones import build_backbone
    from nnfc.training.export import export_supernet

    torch.manual_seed(seed)
    net = build_backbone(preset, in_channels=image_shape[0], **config).eval()
    with torch.no_grad():  # non-trivial BN statistics, so folding is exercised
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    layers = net.gate_layers()
    with tempfile.TemporaryDirectory(prefix="nnfc-fixture-") as tmp:
        sup = Path(tmp) / "supernet.onnx"
        export_supernet(net, sup, (1, *image_shape))
        asm = rule_assembler([(g.name, g.size) for g in layers], len(ATTRIBUTES), seed)
        manifest = {
            "backbone": {"family": net.family, "config": net.config, "preset": preset},
            "input": {"name": "input", "shape": [1, *image_shape], "dtype": "float32",
                      "preprocessing": "none (test fixture)"},
            "output": {"name": "logits", "shape": [1, 10]},
            "attributes": ATTRIBUTES,
            "tasks": {"seen": SEEN, "unseen": UNSEEN},
            "gate_layers": [g.to_json() for g in layers],
            "limit_encoding": {"type": "rule", "in_graph": True},
            "training": {"note": "random weights, rule-based assembler (test fixture)"},
        }
        return write_bundle(root, manifest, {"supernet.onnx": sup,
                                             "assembler.onnx": asm.SerializeToString()})


_CACHE: dict[str, Path] = {}


def profiled_bundle(subnets: int = 24) -> Path:
    """A resnet-tiny fixture bundle with a fitted desktop profile; built once per process."""
    key = f"resnet-tiny-{subnets}"
    if key not in _CACHE:
        from nnfc.bundle import read_bundle
        from nnfc.compiler.fitting import fit_and_save
        from nnfc.compiler.pipeline import make_target
        from nnfc.profile_cache import shipped_profile_path
        from nnfc.compiler.profiler import profile_subnets

        root = Path(tempfile.mkdtemp(prefix="nnfc-compile-fixture-")) / "factory"
        bundle = make_bundle(root)
        target = make_target("desktop", {"threads": 1})
        pred = shipped_profile_path(root, "desktop")  # shipped inside the bundle
        meas = pred.with_name("desktop.measurements.json")
        data = profile_subnets(read_bundle(root), target, meas, subnets=subnets, runs=3,
                               warmup=1, rounds=1, progress=False)
        fit_and_save(bundle, "desktop", data, pred, target_options={"threads": 1})
        _CACHE[key] = root
    return _CACHE[key]


def check_artifacts(out: Path) -> None:
    """Every ONNX file of a compile output passes the full ONNX checker (shape inference
    included) and lists each opset domain once (ORT's quantization tools refuse repeats)."""
    import onnx
    for path in sorted(Path(out).glob("*.onnx")):
        onnx.checker.check_model(str(path), full_check=True)
        domains = [o.domain for o in onnx.load(str(path), load_external_data=False).opset_import]
        assert len(domains) == len(set(domains)), (path, domains)
