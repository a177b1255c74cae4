"""Estimated latency profiles for Jetson modules this machine cannot measure.

A roofline per compute layer: ``max(FLOPs / (peak compute · efficiency), bytes moved / (memory
bandwidth · efficiency)) + per-layer overhead``, summed over the layers the gates leave, plus a
per-inference overhead. Peak compute and bandwidth are the modules' published figures (GPU
only, no DLA); the efficiencies and overheads are typical of TensorRT on these GPUs, not
calibrated. The estimate is used only where no measured jetson profile exists: a measured
profile (``nnfc profile --target jetson --device-dir D`` on the device, then ``profile fit``)
always wins, and every report and summary says the latency is estimated, not measured. An
int8 or fp16 compile gets the estimate of its precision: the peak of that precision and its
element size in the bytes moved.

Memory is the exact graph figure (parameters + largest intermediate tensor), as for every target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from nnfc.compiler.cost_structure import CostStructure
from nnfc.compiler.predictor import LinearModel, Predictor, memory_features
from nnfc.errors import NnfcError


@dataclass(frozen=True)
class JetsonModule:
    """Published GPU figures of one module (max power mode)."""

    name: str
    fp32_tflops: float        # CUDA cores: cores x 2 FLOP x max GPU clock
    fp16_tflops: float        # dense FP16 on the tensor cores
    bandwidth_gbs: float      # LPDDR memory bandwidth
    source: str

    def peak_ops(self, precision: str) -> float:
        """Peak operations per second in ``precision``: dense INT8 on the tensor cores runs
        at twice their FP16 rate (Ampere and Volta alike)."""
        tera = {"fp32": self.fp32_tflops, "fp16": self.fp16_tflops,
                "int8": 2.0 * self.fp16_tflops}[precision]
        return tera * 1e12


#: bytes per weight/activation element as TensorRT runs each precision
ELEMENT_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0}


MODULES: dict[str, JetsonModule] = {m.name: m for m in (
    JetsonModule("orin-nano", 1.28, 10.0, 68.0,
                 "Jetson Orin Nano 8GB: 1024 Ampere cores @ 625 MHz, 32 tensor cores, "
                 "128-bit LPDDR5 68 GB/s"),
    JetsonModule("orin-nx", 1.88, 15.0, 102.4,
                 "Jetson Orin NX 16GB: 1024 Ampere cores @ 918 MHz, 32 tensor cores, "
                 "128-bit LPDDR5 102.4 GB/s"),
    JetsonModule("agx-orin", 5.32, 42.5, 204.8,
                 "Jetson AGX Orin 64GB: 2048 Ampere cores @ 1.3 GHz, 64 tensor cores, "
                 "256-bit LPDDR5 204.8 GB/s"),
    JetsonModule("agx-xavier", 1.41, 11.0, 136.5,
                 "Jetson AGX Xavier: 512 Volta cores @ 1.377 GHz, 64 tensor cores, "
                 "256-bit LPDDR4x 136.5 GB/s"),
)}

DEFAULT_MODULE = "orin-nano"

#: Fractions of the peaks TensorRT kernels reach on convolutions / on memory-bound layers.
COMPUTE_EFFICIENCY = 0.5
MEMORY_EFFICIENCY = 0.7
#: Per-layer kernel launch and scheduling, and per-inference enqueue + synchronisation (ms).
LAYER_OVERHEAD_MS = 0.012
INFERENCE_OVERHEAD_MS = 0.08


def profile_hint(bundle_root: str, device_dir: str = "jetson-subnets") -> str:
    """The commands that measure the real device."""
    return (f"nnfc profile --bundle {bundle_root} --target jetson --device-dir {device_dir} "
            f"(run the script on the Jetson), then nnfc profile --bundle {bundle_root} "
            f"--target jetson fit --measurements {device_dir}/trt_measurements.log")


class RooflinePredictor(Predictor):
    """A ``Predictor`` whose latency is the roofline estimate of one Jetson module."""

    def __init__(self, structure: CostStructure, module: JetsonModule, precision: str,
                 meta: Mapping[str, Any]):
        # memory: parameter MB + largest intermediate MB, exactly (coefficients 1, 1)
        super().__init__("jetson", structure, LinearModel(0.0, []), LinearModel(0.0, [1.0, 1.0]),
                         dict(meta), "layer-traffic")
        self.module, self.precision = module, precision

    def layer_ms(self, gates: Mapping[str, np.ndarray]) -> np.ndarray:
        """[B, L] estimated milliseconds of every compute layer."""
        t = self.structure.layer_terms(gates)
        elem = ELEMENT_BYTES[self.precision]
        peak = self.module.peak_ops(self.precision)
        compute_s = 2.0 * t["macs"] / (peak * COMPUTE_EFFICIENCY)
        bytes_moved = elem * (t["in_elems"] + t["out_elems"] + t["params"])
        memory_s = bytes_moved / (self.module.bandwidth_gbs * 1e9 * MEMORY_EFFICIENCY)
        return np.maximum(compute_s, memory_s) * 1e3 + LAYER_OVERHEAD_MS

    def predict(self, gates: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        lat = self.layer_ms(gates).sum(axis=1) + INFERENCE_OVERHEAD_MS
        mem = self.memory(memory_features(self.structure, gates))
        return lat, np.maximum(mem, 1e-6)

    @property
    def margins(self) -> tuple[float, float]:
        return 0.0, 0.0  # an estimate has no calibrated error distribution


def estimated_predictor(structure: CostStructure, bundle_root: str, device: str,
                        precision: str = "fp32") -> RooflinePredictor:
    """The roofline predictor of ``device`` (one of ``MODULES``) for a factory's structure,
    for engines built in ``precision`` (fp32, fp16 or int8)."""
    if precision not in ELEMENT_BYTES:
        raise NnfcError(f"no roofline estimate for precision {precision!r}")
    if device not in MODULES:
        raise NnfcError(f"unknown Jetson module {device!r} (known: {', '.join(MODULES)})")
    module = MODULES[device]
    note = (f"estimated, not measured: roofline of each layer on {device} "
            f"({module.source}; {COMPUTE_EFFICIENCY:.0%} of peak compute, "
            f"{MEMORY_EFFICIENCY:.0%} of bandwidth, {LAYER_OVERHEAD_MS * 1e3:.0f} us per layer); "
            f"measure the real device with: {profile_hint(bundle_root)}")
    meta = {"precision": precision,
            "estimated": {"device": device, "module": asdict(module), "precision": precision,
                          "compute_efficiency": COMPUTE_EFFICIENCY,
                          "memory_efficiency": MEMORY_EFFICIENCY,
                          "layer_overhead_ms": LAYER_OVERHEAD_MS,
                          "inference_overhead_ms": INFERENCE_OVERHEAD_MS, "note": note,
                          "profile_command": profile_hint(bundle_root)},
            "measured_locally": False,
            "target_options": {"fp16": True} if precision == "fp16" else {}}
    return RooflinePredictor(structure, module, precision, meta)
