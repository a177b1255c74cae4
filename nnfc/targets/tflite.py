"""``android`` target: TFLite, converted with onnx2tf and run/benchmarked with LiteRT.

``lower`` fixes the batch to 1, rewrites layouts onnx2tf would mis-infer
(:mod:`nnfc.targets.onnx_rewrites`), converts with onnx2tf in a long-lived worker process
(:mod:`nnfc.targets.onnx2tf_convert`, :class:`ConverterProcess`) and checks the float32 result against onnxruntime on a
random input before keeping it. Artifacts: ``model.tflite`` (float32) and, with
``precision="float16"``, ``model.fp16.tflite`` (float16 weights, float32 I/O), each with a
``<artifact>.json`` sidecar describing the layouts, the converter and the measured difference.

Layout: onnx2tf turns image inputs NCHW -> NHWC. :meth:`TFLiteTarget.run` takes and returns
arrays in the ONNX layout (NCHW) and transposes at the boundary using the sidecar, so callers
can compare with the ONNX model directly; :meth:`TFLiteTarget.benchmark` feeds random data in
the TFLite model's own (NHWC) layout. ``BenchResult.details['layout']`` says which.

Runtime: ai-edge-litert's Interpreter with the XNNPACK delegate (the CPU path a phone uses),
``threads`` configurable. Memory: peak RSS growth while loading and running the model
(:class:`nnfc.targets.peak_rss.PeakRss`). Phones over adb: ``device="<adb serial>"`` benchmarks
with TFLite's ``benchmark_model`` on the phone instead (:mod:`nnfc.targets.adb`).

Installation: ``make install-android`` (tensorflow-cpu, ai-edge-litert, onnxsim... from the
``android`` extra, then onnx2tf and tf-keras with ``--no-deps`` because onnx2tf pins old
numpy/onnx/onnxruntime). ``NNFC_ONNX2TF_PYTHON`` may name another interpreter (e.g. an isolated
venv with onnx2tf's own pins) to run the converter.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx

from nnfc.errors import NnfcError
from nnfc.onnx_io import load_onnx, source_name
from nnfc.targets.base import BenchResult, summarize, time_calls
from nnfc.targets.onnx_rewrites import tokens_after_nhwc
from nnfc.targets.peak_rss import PeakRss
from nnfc.targets.static_shapes import with_static_batch
from nnfc.targets.tflite_int8 import dequantize_output, quantize_input

INSTALL_HINT = ("install the android extra: `make install-android` in the nnfc checkout, or "
                "`pip install 'nnfc[android]' && pip install --no-deps onnx2tf==1.29.24 "
                "tf-keras==2.21.0`")
#: NCHW -> NHWC: ``tflite = onnx.transpose(NHWC)``; back: ``onnx = tflite.transpose(NCHW)``
NHWC = (0, 2, 3, 1)
NCHW = (0, 3, 1, 2)
#: a conversion is rejected when its float32 output differs from ONNX Runtime's by more than
#: this times max(1, |output|): correct conversions differ by ~1e-7, broken ones by ~1e-1.
FLOAT32_TOLERANCE = 1e-3
FLOAT16_TOLERANCE = 5e-2
CONVERT_TIMEOUT_S = float(os.environ.get("NNFC_ONNX2TF_TIMEOUT", "1800"))


def litert_interpreter_class():
    """ai-edge-litert's ``Interpreter``, or one NnfcError saying how to install it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise NnfcError(f"the android target needs LiteRT (ai-edge-litert), which is not "
                        f"installed: {INSTALL_HINT}") from exc
    return Interpreter


def converter_python() -> str:
    """The interpreter that runs onnx2tf: ``$NNFC_ONNX2TF_PYTHON`` or this one."""
    return os.environ.get("NNFC_ONNX2TF_PYTHON") or sys.executable


def _check_converter(python: str) -> None:
    if python == sys.executable:
        missing = [m for m in ("onnx2tf", "tensorflow", "tf_keras", "onnxsim", "sng4onnx",
                               "onnx_graphsurgeon")
                   if importlib.util.find_spec(m) is None]
        if missing:
            raise NnfcError(f"the android target converts with onnx2tf, but "
                            f"{', '.join(missing)} is not installed: {INSTALL_HINT}")
    elif not Path(python).exists():
        raise NnfcError(f"NNFC_ONNX2TF_PYTHON={python} does not exist")


def sidecar_path(artifact: str | Path) -> Path:
    """``model.tflite`` -> ``model.tflite.json`` (layouts, converter, checked difference)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def _io_dims(model: onnx.ModelProto) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    inits = {i.name for i in model.graph.initializer}

    def dims(values) -> dict[str, list[int]]:
        return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in values if v.name not in inits}
    return dims(model.graph.input), dims(model.graph.output)


def _match_layouts(kind: str, onnx_dims: dict[str, list[int]],
                   details: dict[str, dict], aliases: dict[str, str] | None = None
                   ) -> list[dict]:
    """Sidecar entries pairing each ONNX input/output with the TFLite tensor of that name and
    the permutation between their layouts: inputs get ``to_tflite`` (ONNX -> TFLite, NHWC
    preferred), outputs ``to_onnx`` (TFLite -> ONNX, NCHW preferred)."""
    entries = []
    for onnx_name, dims in onnx_dims.items():
        name = (aliases or {}).get(onnx_name, onnx_name)
        if name not in details:
            raise NnfcError(f"the TFLite model has no {kind} {name!r} "
                            f"(it has {', '.join(details)})")
        tfl = [int(d) for d in details[name]["shape"]]
        if kind == "input":
            key, perm = "to_tflite", _perm_between(dims, tfl, NHWC)
        else:
            key, perm = "to_onnx", _perm_between(tfl, dims, NCHW)
        if perm is None:
            raise NnfcError(f"TFLite {kind} {name} has shape {tfl}, which is no layout of "
                            f"the ONNX shape {dims}")
        entries.append({"name": onnx_name, "onnx_shape": dims, "tflite_shape": tfl, key: perm,
                        **({"tflite_name": name} if name != onnx_name else {})})
    return entries


def _perm_between(src: list[int], dst: list[int], preferred: tuple[int, ...]) -> list[int] | None:
    """A permutation p with ``src.transpose(p).shape == dst``; ``preferred`` (NHWC/NCHW) wins
    for 4-D tensors, identity otherwise; None if the shapes don't match at all."""
    src, dst = list(src), list(dst)
    if len(src) == 4 and [src[i] for i in preferred] == dst:
        return list(preferred)
    if src == dst:
        return list(range(len(src)))
    return None


class TFLiteTarget:
    """TFLite via onnx2tf, measured with LiteRT + XNNPACK (the ``android`` target)."""

    name = "android"
    artifact_suffix = ".tflite"
    artifact_suffixes = (".tflite",)
    runtime = "litert"
    option_help = {"threads": "LiteRT/XNNPACK threads (default: min(4, cores))",
                   "precision": "float32 or float16 TFLite",
                   "device": "adb serial: benchmark on that phone with benchmark_model",
                   "int8_io": "int8 artifacts take and return int8 (default: float32 I/O)"}
    #: one thread: LiteRT then computes in the calling thread, timed by its CPU clock
    repeatable_options = {"threads": 1}
    #: ``nnfc compile --precision`` (:mod:`nnfc.targets.tflite_int8`)
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, threads: int | None = None, precision: str = "float32",
                 device: str | None = None, int8_io: bool = False):
        if precision not in ("float32", "float16"):
            raise NnfcError(f"android precision must be float32 or float16, got {precision!r}")
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.precision = precision
        self.int8_io = bool(int8_io)
        self.device = device or os.environ.get("NNFC_ADB_SERIAL") or None
        if self.device:
            self.runner = None  # a phone benchmarks whole blocks with benchmark_model
        #: conversions reused for subnets of the same graph (see :meth:`prepare_profiling`)
        self.templates = None
        #: lowerings so far: how many were derived from a template, how many converted
        self.lowered = {"derived": 0, "converted": 0}

    def prepare_profiling(self) -> None:
        """Lower each later subnet whose graph matches one already converted by transplanting
        its weights into that conversion (:mod:`nnfc.targets.tflite_templates`): ~0.05 s
        instead of onnx2tf's ~3 s, the same TFLite model, checked against ONNX Runtime like
        every conversion. ``nnfc profile`` turns this on."""
        from nnfc.targets.tflite_templates import TemplateCache
        if self.templates is None:
            self.templates = TemplateCache()

    def use_template_store(self, directory) -> None:
        """As :meth:`prepare_profiling`, with the conversions kept in ``directory`` for later
        processes: ``nnfc compile`` derives a factory's subnets from the conversion an earlier
        compile made (seconds instead of a TensorFlow start and an onnx2tf run)."""
        from nnfc.targets.tflite_templates import TemplateStore
        self.templates = TemplateStore(directory)

    # ---- lowering -------------------------------------------------------------------------
    def lower(self, pruned_onnx: str | Path | bytes, out_dir: str | Path) -> Path:
        """Convert ``pruned_onnx`` to ``out_dir/model.tflite`` (or ``model.fp16.tflite`` with
        precision float16); checked against onnxruntime before it is kept."""
        python = converter_python()
        _check_converter(python)
        out_dir = Path(out_dir).resolve()  # the converter worker runs in another directory
        out_dir.mkdir(parents=True, exist_ok=True)
        model = load_onnx(pruned_onnx)
        if any(i.name.startswith("gate.") for i in model.graph.input):
            raise NnfcError(f"{source_name(pruned_onnx)} still has gate inputs; prune it first "
                            f"(nnfc prune, or nnfc.passes.apply_gates)")
        static = with_static_batch(model, 1)
        static, rewrites = tokens_after_nhwc(static)
        names = {"float32": "model.tflite", "float16": "model.fp16.tflite"}
        keep = ["float32"] + (["float16"] if self.precision == "float16" else [])
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".nnfc-tflite-", dir=out_dir) as tmp:
            work = Path(tmp)
            produced = {p: work / "derived" / f"model_{p}.tflite" for p in keep}
            metas = (self._derive(static, produced, t0, rewrites)
                     if self.templates is not None else None)
            if metas is None:
                onnx.save_model(static, str(work / "input.onnx"))
                info = self._convert(python, work / "input.onnx", work / "out")
                seconds = time.perf_counter() - t0
                produced = {p: work / "out" / f"model_{p}.tflite" for p in keep}
                metas = {p: self._describe(static, produced[p], p, info, seconds, rewrites)
                         for p in keep}
                self.lowered["converted"] += 1
                if self.templates is not None:
                    for p in keep:
                        self.templates.add(static, produced[p].read_bytes(), p, info)
            else:
                self.lowered["derived"] += 1
            for precision in keep:
                meta = metas[precision]
                final = out_dir / names[precision]
                tmp_json = work / "meta.json"
                tmp_json.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
                os.replace(produced[precision], final)
                os.replace(tmp_json, sidecar_path(final))
        return out_dir / names[self.precision]

    def _derive(self, static: onnx.ModelProto, produced: dict[str, Path], t0: float,
                rewrites: int) -> dict[str, dict] | None:
        """Write each precision's TFLite model derived from a template of the same graph to
        ``produced`` and describe it (checked against ONNX Runtime); None where no template
        serves (the caller converts)."""
        metas = {}
        for precision, path in produced.items():
            for tflite, template in self.templates.derive(static, precision):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(tflite)
                info = {**template.info, "derived": "weights and shapes of this subnet in the "
                        "onnx2tf conversion of a subnet with the same graph"}
                try:
                    metas[precision] = self._describe(static, path, precision, info,
                                                      time.perf_counter() - t0, rewrites)
                    break
                except NnfcError:
                    continue
            else:
                return None
        return metas

    def lower_precision(self, model: onnx.ModelProto, precision: str, out_dir: Path,
                        calibration=None, raw_outputs=(), keep_float=()) -> Path:
        """The fp16 or int8 artifact of the float deployable ``model`` (see
        :mod:`nnfc.targets.tflite_int8`); int8 keeps the raw outputs' layers and what follows
        them float, and as many more of its noisiest layers (TensorFlow Lite's ranking) as
        ``keep_float`` names."""
        from nnfc.targets.tflite_int8 import lower_fp16, lower_int8
        if precision == "fp16":
            return lower_fp16(self, model, out_dir)
        return lower_int8(self, model, out_dir, calibration.images, raw_outputs,
                          io="int8" if self.int8_io else "float", keep_float=len(keep_float))

    def _convert(self, python: str, model: Path, out: Path) -> dict:
        return converter_process(python).convert(model, out)

    def _describe(self, static: onnx.ModelProto, tflite: Path, precision: str, info: dict,
                  seconds: float, rewrites: int) -> dict:
        """Sidecar for one TFLite file: I/O layouts, converter, checked max |diff| vs ORT."""
        Interpreter = litert_interpreter_class()
        interp = Interpreter(model_path=str(tflite), num_threads=self.threads)
        runner = interp.get_signature_runner()
        details_in = runner.get_input_details()
        details_out = runner.get_output_details()
        onnx_in, onnx_out = _io_dims(static)
        inputs = _match_layouts("input", onnx_in, details_in)
        outputs = _match_layouts("output", onnx_out, details_out,
                                 (info.get("int8") or {}).get("output_names"))
        meta = {"format": "nnfc-tflite", "version": 1, "precision": precision,
                "inputs": inputs, "outputs": outputs,
                "layout": _layout_note(inputs),
                "converter": {**info, "seconds": round(seconds, 2),
                              "token_layout_rewrites": rewrites}}
        # int8 is held to the family's metric instead (nnfc.precision): no tolerance here
        meta["max_abs_diff_vs_onnx"] = self._check(static, tflite, meta, precision)
        return meta

    def _check(self, static: onnx.ModelProto, tflite: Path, meta: dict,
               precision: str) -> float:
        """Max |TFLite - ORT| over the outputs; an NnfcError naming the output when one is
        non-finite or beyond the precision's tolerance (relative to the output's scale)."""
        from nnfc.equivalence import compare_outputs, max_diff
        from nnfc.targets.onnxruntime import open_reference_session
        session = open_reference_session(static.SerializeToString())
        rng = np.random.default_rng(0)
        # inputs in the range models are fed (images scaled to [0, 1]): a standard-normal
        # image saturates a detector's scores, and the tied top-k rows then differ between
        # runtimes by which of the equal candidates each picks
        feeds = {i["name"]: rng.random(i["onnx_shape"], dtype=np.float32)
                 for i in meta["inputs"]}
        want = session.run(None, feeds)
        got = self._run_with(tflite, meta, feeds)
        rtol = {"float32": FLOAT32_TOLERANCE, "float16": FLOAT16_TOLERANCE}.get(
            precision, float("inf"))
        return max_diff(compare_outputs(
            [o.name for o in session.get_outputs()], got, want, rtol=rtol,
            got_is=f"the {precision} TFLite model's (onnx2tf)", want_is="the ONNX model's"))

    # ---- running --------------------------------------------------------------------------
    def run(self, artifact: str | Path, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the TFLite model on ``inputs`` given in the ONNX layout (NCHW images); returns
        the outputs in the ONNX layout and order (layouts from the sidecar, else inferred)."""
        artifact = _existing(artifact)
        return self._run_with(artifact, read_sidecar(artifact), inputs)

    def _run_with(self, artifact: Path, meta: dict | None,
                  inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        interp = self._interpreter(artifact)
        runner = interp.get_signature_runner()
        details_in = runner.get_input_details()
        if meta is None:
            meta = _infer_layouts(details_in, runner.get_output_details(), inputs)
        feeds = {}
        for spec in meta["inputs"]:
            if spec["name"] not in inputs:
                raise NnfcError(f"missing input {spec['name']!r} for {artifact.name}")
            array = np.asarray(inputs[spec["name"]])
            if list(array.shape) != list(spec["onnx_shape"]):
                raise NnfcError(f"input {spec['name']} must have shape {spec['onnx_shape']} "
                                f"(ONNX layout), got {list(array.shape)}")
            feeds[spec["name"]] = np.ascontiguousarray(quantize_input(
                array.transpose(spec["to_tflite"]), details_in[spec["name"]]))
        results = runner(**feeds)
        details_out = runner.get_output_details()
        return [np.ascontiguousarray(dequantize_output(results[spec.get("tflite_name",
                                                                         spec["name"])],
                                                       details_out[spec.get("tflite_name",
                                                                            spec["name"])])
                                     .transpose(spec["to_onnx"]))
                for spec in meta["outputs"]]

    def runner(self, artifact: str | Path):
        """One inference of ``artifact`` per call (interpreter and random inputs in the TFLite
        layout made once), for measurements that interleave two models call by call
        (``measure_relative``)."""
        interp = self._interpreter(_existing(artifact))
        _random_feeds(interp)
        return interp.invoke

    def _interpreter(self, artifact: Path):
        """An interpreter for the file's current contents, shared by ``run`` and ``runner``
        (the last few files are kept: lowering checks, then the profiler or compile times, the
        same model; XNNPACK packs its weights once)."""
        stat = os.stat(artifact)  # survives the rename into the output directory
        key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cache = self.__dict__.setdefault("_interpreters", {})
        if key not in cache:
            while len(cache) >= 3:
                cache.pop(next(iter(cache)))
            cache[key] = _load(litert_interpreter_class(), artifact, self.threads)
        return cache[key]

    def benchmark(self, artifact: str | Path, runs: int = 50, warmup: int = 10) -> BenchResult:
        """Median/p90 latency at batch 1 (random inputs in the TFLite layout) and the peak RSS
        growth while loading and running; on a phone with ``device`` set (see adb.py)."""
        artifact = _existing(artifact)
        if self.device:
            from nnfc.targets.adb import AdbBenchmark
            return AdbBenchmark(self.device).benchmark(artifact, runs=runs, warmup=warmup,
                                                       threads=self.threads)
        Interpreter = litert_interpreter_class()
        import ai_edge_litert
        meta = read_sidecar(artifact)
        with PeakRss() as peak:
            interp = _load(Interpreter, artifact, self.threads)
            _random_feeds(interp)
            times = time_calls(interp.invoke, runs, warmup)
        median, p90 = summarize(times)
        details: dict[str, Any] = {
            "runtime": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')} "
                       f"(XNNPACK delegate, CPU)",
            "threads": self.threads,
            "layout": meta["layout"] if meta else "inputs fed in the TFLite model's own layout",
            "memory": f"{peak.method} while loading and running the interpreter",
        }
        if meta:
            details["precision"] = meta["precision"]
        return BenchResult(median, p90, peak.mb, len(times), details)


def read_sidecar(artifact: str | Path) -> dict | None:
    """The ``<artifact>.json`` written by :meth:`TFLiteTarget.lower`, or None if absent."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    from nnfc.jsonfile import read_json
    from nnfc.schema import Obj
    meta = read_json(path, Obj(), what="TFLite sidecar", max_bytes=16 << 20)
    if meta.get("format") != "nnfc-tflite":
        raise NnfcError(f"{path} is not an nnfc TFLite sidecar")
    return meta


def _layout_note(inputs: list[dict]) -> str:
    moved = [i["name"] for i in inputs if i["to_tflite"] != list(range(len(i["onnx_shape"])))]
    if not moved:
        return "inputs keep the ONNX layout"
    return (f"NHWC: input(s) {', '.join(moved)} are NCHW in ONNX and NHWC in TFLite; "
            f"nnfc transposes at the boundary")


def _infer_layouts(details_in: dict, details_out: dict, inputs: Mapping[str, np.ndarray]
                   ) -> dict:
    """Layouts of a TFLite file nnfc did not write: match given input shapes to the model's."""
    specs_in = []
    for name, d in details_in.items():
        tfl = [int(s) for s in d["shape"]]
        given = list(np.shape(inputs[name])) if name in inputs else tfl
        perm = _perm_between(given, tfl, NHWC)
        if perm is None:
            raise NnfcError(f"input {name} has shape {given}; the TFLite model wants {tfl} "
                            f"(NHWC) or its NCHW transpose")
        specs_in.append({"name": name, "onnx_shape": given, "tflite_shape": tfl,
                         "to_tflite": perm})
    nchw = any(s["to_tflite"] != list(range(len(s["tflite_shape"]))) for s in specs_in)
    specs_out = []
    for name, d in details_out.items():
        tfl = [int(s) for s in d["shape"]]
        perm = list(NCHW) if nchw and len(tfl) == 4 else list(range(len(tfl)))
        specs_out.append({"name": name, "to_onnx": perm})
    return {"inputs": specs_in, "outputs": specs_out, "layout": _layout_note(specs_in)}


class ConverterProcess:
    """A long-lived onnx2tf worker (``python -m nnfc.targets.onnx2tf_convert --serve``).

    Importing tensorflow + onnx2tf takes ~9 s, the conversion of a small model ~3 s: the
    profiler converts hundreds of subnets, so one worker serves them all. It is restarted every
    ``max_conversions`` conversions (bounding its memory) and after a crash."""

    def __init__(self, python: str, max_conversions: int = 40):
        self.python = python
        self.max_conversions = max_conversions
        self.proc: subprocess.Popen | None = None
        self.count = 0
        self.lock = threading.Lock()
        self._log = None
        self._home: str | None = None

    def _start(self) -> None:
        self.close()
        env = dict(os.environ)
        env["PATH"] = str(Path(self.python).parent) + os.pathsep + env.get("PATH", "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
        # the worker imports nnfc.targets.onnx2tf_convert: make this checkout importable
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self._log = tempfile.TemporaryFile(mode="w+", prefix="nnfc-onnx2tf-", suffix=".log")
        # an empty working directory: `python -m` puts it first on sys.path
        self._home = tempfile.mkdtemp(prefix="nnfc-onnx2tf-")
        self.proc = subprocess.Popen(
            [self.python, "-m", "nnfc.targets.onnx2tf_convert", "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            env=env, cwd=self._home, bufsize=1)
        self.count = 0

    def convert(self, model: Path, out: Path, int8: dict | None = None) -> dict:
        """Convert ``model`` into ``out/model_float{32,16}.tflite`` (and with ``int8``,
        ``out/model_int8.tflite``); NnfcError on failure."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None \
                    or self.count >= self.max_conversions:
                self._start()
            self.count += 1
            request = json.dumps({"model": str(model), "out": str(out),
                                  **({"int8": int8} if int8 else {})})
            try:
                self.proc.stdin.write(request + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # reported below as a dead worker
            line = self._read_line(CONVERT_TIMEOUT_S)
            if line is None:
                self.close()
                raise NnfcError(f"onnx2tf did not finish within {CONVERT_TIMEOUT_S:.0f} s "
                                f"(set NNFC_ONNX2TF_TIMEOUT to allow longer)")
            if not line:
                tail = self._log_tail()
                self.close()
                raise NnfcError(f"the onnx2tf converter process died: {_last_error(tail)}")
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            raise NnfcError(f"unexpected reply from the onnx2tf converter: {line[:200]!r}") \
                from None
        if not answer.get("ok"):
            raise NnfcError(f"onnx2tf could not convert the model: {answer.get('error')}")
        return answer.get("info", {})

    def _read_line(self, timeout: float) -> str | None:
        """One reply line; "" if the worker exited, None on timeout."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                return None
        return self.proc.stdout.readline()

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return "\n".join(self._log.read().splitlines()[-40:])

    def close(self) -> None:
        """Stop the worker (closing its stdin ends it; killed if it lingers)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None


_CONVERTERS: dict[str, ConverterProcess] = {}


def converter_process(python: str) -> ConverterProcess:
    """The shared converter worker for ``python`` (started on first use, stopped at exit)."""
    if python not in _CONVERTERS:
        if not _CONVERTERS:
            atexit.register(lambda: [c.close() for c in _CONVERTERS.values()])
        _CONVERTERS[python] = ConverterProcess(python)
    return _CONVERTERS[python]


def _existing(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    if not artifact.is_file():
        raise NnfcError(f"artifact {artifact} does not exist")
    return artifact


def _random_feeds(interp) -> None:
    """Set every input of ``interp`` to random data of its shape and dtype (seed 0)."""
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        shape = [int(s) for s in d["shape"]]
        data = rng.standard_normal(shape) if np.issubdtype(d["dtype"], np.floating) \
            else rng.integers(0, 2, shape)
        interp.set_tensor(d["index"], data.astype(d["dtype"]))


def _load(Interpreter, artifact: Path, threads: int):
    try:
        interp = Interpreter(model_path=str(artifact), num_threads=threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise NnfcError(f"LiteRT cannot load {artifact}: {str(exc).splitlines()[0]}") from exc
    return interp


def _last_error(stderr: str) -> str:
    """The most telling line of a failed conversion's stderr."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:500]
    return (lines[-1] if lines else "no output")[:500]

