"""The schema of every JSON file kind nnfc reads (one place; checked by
:func:`nnfc.jsonfile.read_json`): what a value must be for nnfc to use it — figures finite,
latencies, rounds and memory positive, thread counts bounded. Other fields are free-form
metadata that is only displayed."""

from __future__ import annotations

from nnfc.schema import (Any_, Bool, Const, Int, List, Map, Num, Obj, OneOf, Optional_, Str)

POSITIVE = Num(gt=0)
NON_NEGATIVE = Num(ge=0)
THREADS = Optional_(Int(ge=0, le=4096))
#: packed gates ("0101…") or a list of 0/1 (the 0/1 check happens where they are unpacked)
PACKED_GATES = Map(OneOf(Str(), List(Num())))

#: ``{"gate.<layer>": [0, 1, ...]}`` (values checked exactly 0/1 before any cast)
GATES = Map(List(Num(), max_len=1 << 20))

#: ``.nnfc-output.json``, the marker of an nnfc output directory
OUTPUT_MARKER_FORMAT = "nnfc-output"
OUTPUT_MARKER = Obj({"format": Const(OUTPUT_MARKER_FORMAT), "files": List(Str())},
                    {"kind": Str()})

#: a predictor (``nnfc profile``)
PREDICTOR = Obj({
    "target": Str(nonempty=True),
    "structure": Obj(),
    "latency_model": Obj({"intercept": Num(), "coef": List(Num(), min_len=1)},
                         {"feature_set": Str()}),
    "memory_model": Obj({"intercept": Num(), "coef": List(Num(), min_len=2, max_len=2)}),
}, {
    "margin": Obj({"latency": Num(ge=0, le=10), "memory": Num(ge=0, le=10)}),
    "reference": Obj({"artifact": Str(nonempty=True), "sha256": Str()},
                     {"latency_ms": Optional_(POSITIVE)}),
    "target_options": Obj(optional={"threads": THREADS}),
    "measured_locally": Bool(),
    "host": Obj(),
    "bundle": Obj(),
    "profile": Obj(),
    "accuracy": Obj(),
    "estimated": Optional_(Obj()),
})

#: one measured subnet of a profile
MEASUREMENT_ROW = Obj({"gates": PACKED_GATES, "latency_ms": POSITIVE}, {
    "index": Int(ge=0), "relative": Optional_(POSITIVE), "candidate_ms": Optional_(POSITIVE),
    "reference_ms": Optional_(POSITIVE), "round_ratios": List(POSITIVE),
    "load": Optional_(NON_NEGATIVE), "runtime_memory_mb": Optional_(NON_NEGATIVE),
    "graph_memory_mb": NON_NEGATIVE, "params": NON_NEGATIVE, "param_bytes": NON_NEGATIVE,
    "peak_tensor_bytes": NON_NEGATIVE, "flops": NON_NEGATIVE,
    "activation_ratio": Num(ge=0, le=1)})

#: a profile's measurements (``<name>.measurements.json``, or converted from a device log)
MEASUREMENTS = Obj({"rows": List(MEASUREMENT_ROW)}, {
    "failed": List(Obj({"index": Int(ge=0)})),
    "reference": Optional_(Obj({}, {"artifact": Str(nonempty=True), "sha256": Str(),
                                    "calibration_ms": Optional_(POSITIVE),
                                    "latency_ms": Optional_(POSITIVE)})),
    "runs": Optional_(Int(ge=1)), "warmup": Optional_(Int(ge=0)),
    "rounds": Optional_(Int(ge=1)),
    "target_options": Obj(optional={"threads": THREADS})})

#: ``plan.json`` of subnets exported for device-side profiling
DEVICE_PLAN = Obj({"target": Str(nonempty=True), "bundle": Obj(), "rows": List(Obj({
    "model": Str(nonempty=True), "gates": PACKED_GATES}, {
    "graph_memory_mb": NON_NEGATIVE, "params": NON_NEGATIVE, "flops": NON_NEGATIVE}))})

#: a saved ``nnfc bench`` run as ``--baseline`` reads it
BENCH_RUN = Obj({"artifacts": List(Obj({
    "name": Str(nonempty=True),
    "latency_ms": Obj({}, {"median": Optional_(POSITIVE), "best": Optional_(POSITIVE),
                           "p90": Optional_(POSITIVE),
                           "rounds": List(POSITIVE, max_len=100_000)}),
}, {"artifact": Optional_(Str()), "sha256": Optional_(Str()), "target": Str(),
    "memory_mb": Optional_(POSITIVE), "runtime_memory_mb": Optional_(NON_NEGATIVE),
    "memory_source": Optional_(Str()),
    "eval": Optional_(Obj({}, {"value": Optional_(Num()), "metric": Optional_(Str()),
                               "samples": Optional_(Int(ge=0)), "seed": Optional_(Int())})),
    }), max_len=10_000)}, {
    "reference": Optional_(Obj({}, {"rounds": List(POSITIVE), "version": Any_()})),
})

#: a pipeline file's (``nnfc run``) compile options of a scenario or [matrix]
PIPELINE_COMPILE_OPTIONS = Obj(optional={
    "precision": Str(), "max_drop": NON_NEGATIVE, "method": Str(), "step": Num(gt=0, le=1),
    "margin": NON_NEGATIVE, "refine_rounds": Int(ge=1, le=100), "device": Str(),
    "runs": Int(ge=1, le=1_000_000), "rounds": Int(ge=1, le=10_000),
    "warmup": Int(ge=0, le=1_000_000), "verify": Bool(), "profile": Str(nonempty=True)})

#: a pipeline file's [bench] table (the ranges of `nnfc bench`'s options)
PIPELINE_BENCH = Obj(optional={
    "baseline": Str(nonempty=True), "max_regression": Str(), "eval": Bool(),
    "eval_samples": Int(ge=2), "rounds": Int(ge=3, le=10_000),
    "runs": Int(ge=1, le=1_000_000), "warmup": Int(ge=0, le=1_000_000),
    "confidence": Num(ge=0.5, le=0.9999), "lat_stat": Str(choices=("median", "p90")),
    "min_round_time": NON_NEGATIVE, "save": Str(nonempty=True), "junit": Str(nonempty=True),
    "markdown": Str(nonempty=True)})

#: a ``nnfc compile`` output's ``report.json`` as ``nnfc bench`` reads it
COMPILE_REPORT = Obj({"artifact": Str(nonempty=True),
                      "request": Obj({"target": Str(nonempty=True)},
                                     {"task": List(Str()), "lat_ms": Optional_(POSITIVE),
                                      "mem_mb": Optional_(POSITIVE)})},
                     {"measured": Obj({}, {"memory_mb": Optional_(POSITIVE),
                                           "runtime_memory_mb": Optional_(NON_NEGATIVE),
                                           "latency_ms": Optional_(Obj({}, {
                                               "median": Optional_(POSITIVE),
                                               "p90": Optional_(POSITIVE),
                                               "round_medians": List(POSITIVE)}))}),
                      "limit": Optional_(Num(ge=0, le=1)), "activation_ratio": Num(ge=0, le=1),
                      "bundle": Obj({}, {"path": Str()})})
