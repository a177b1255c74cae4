"""Convert static ONNX models to TFLite with onnx2tf; run as a subprocess by the android target.

``python -m nnfc.targets.onnx2tf_convert MODEL.onnx OUT_DIR`` writes ``OUT_DIR/model_float32.tflite``
and ``OUT_DIR/model_float16.tflite`` (onnx2tf always emits both) and prints one JSON line with
the onnx2tf/tensorflow versions. ``--serve`` keeps one process for many conversions (the
profiler converts hundreds of subnets; importing tensorflow + onnx2tf costs ~9 s each time): it
reads ``{"model": ..., "out": ...}`` JSON lines on stdin and answers one JSON line per request,
``{"ok": true, "info": {...}}`` or ``{"ok": false, "error": "..."}``, on the stdout it was
started with (anything the converter prints goes to stderr). It runs in its own process because onnx2tf imports tensorflow
(about 1 GB resident, which would pollute the caller's memory readings), prints a lot, reads a
sample-data file from the working directory and simplifies the ONNX file it is given in place.

Steps: copy the model into a scratch working directory, simplify it with onnxsim in-process
(constant folding; onnx2tf's own onnxsim call goes through ``$PATH`` and silently skips
simplification when the venv is not activated, which mis-converts broadcast Muls), write the
validation sample data onnx2tf would otherwise download from GitHub, convert.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

#: onnx2tf reads this file from the working directory (else downloads it): 20 RGB 128x128 images
#: in [0, 1) used only for its internal dummy inference. Random data serves the same purpose.
SAMPLE_DATA = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _patch_topk_k() -> None:
    """onnx2tf reads TopK's constant K with ``int(array)``; numpy 2 refuses that for ONNX's
    1-D one-element K. Hand its TopK converter K as a 0-d array (same value)."""
    import onnx2tf.ops.TopK as topk

    original = getattr(topk, "_nnfc_original_get", None) or topk.get_constant_or_variable

    def get(*args, **kwargs):
        value = original(*args, **kwargs)
        if isinstance(value, np.ndarray) and value.size == 1 and value.ndim > 0:
            return value.reshape(())
        return value

    topk._nnfc_original_get = original
    topk.get_constant_or_variable = get


def convert(model_path: Path, out_dir: Path, int8: dict | None = None) -> dict:
    """Convert ``model_path`` into ``out_dir/model_float{32,16}.tflite``; return version info.
    ``int8``: also ``out_dir/model_int8.tflite`` (:mod:`nnfc.targets.tflite_int8_convert`)
    from ``{"calibration": NHWC .npy, "raw_shapes": [[...]], "io": "float"|"int8"}``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import onnx
    import onnxsim

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nnfc-onnx2tf-") as tmp:
        work = Path(tmp)
        model = onnx.load(str(model_path))
        simplified, ok = onnxsim.simplify(model)
        if ok:
            model = simplified
        onnx.save(model, str(work / "model.onnx"))
        rng = np.random.default_rng(0)
        np.save(work / SAMPLE_DATA, rng.random((20, 128, 128, 3), dtype=np.float32))
        cwd = os.getcwd()
        os.chdir(work)
        # onnx2tf prints its progress and the saved_model signature on stdout even when
        # non-verbose: keep our stdout for the one JSON line.
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                import onnx2tf
                import tensorflow as tf
                _patch_topk_k()
                extra = {}
                if int8:
                    from nnfc.targets.tflite_int8_convert import onnx2tf_options
                    extra = onnx2tf_options(model, int8["calibration"])
                onnx2tf.convert(input_onnx_file_path=str(work / "model.onnx"),
                                output_folder_path=str(work / "tf"),
                                copy_onnx_input_output_names_to_tflite=True,
                                output_signaturedefs=True, not_use_onnxsim=True,
                                replace_to_pseudo_operators=["erf"],
                                non_verbose=True, **extra)
        except SystemExit as exc:  # onnx2tf calls sys.exit(1) on some errors
            tail = log.getvalue().strip().splitlines()[-3:]
            raise RuntimeError(f"onnx2tf stopped (exit {exc.code}): " + " | ".join(tail)) from None
        finally:
            os.chdir(cwd)
        try:  # free the Keras graph between conversions in --serve mode
            import tf_keras
            tf_keras.backend.clear_session()
        except Exception:
            pass
        info = {"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__,
                "onnxsim": onnxsim.__version__, "simplified": bool(ok)}
        if int8:
            from nnfc.targets.tflite_int8_convert import int8_model
            data, kept, aliases = int8_model(
                work / "tf", np.load(int8["calibration"]), [o.name for o in model.graph.output],
                list(int8.get("raw_shapes") or []), int8.get("io", "float"),
                int(int8.get("keep_float", 0)))
            (out_dir / "model_int8.tflite").write_bytes(data)
            info["int8"] = {"io": int8.get("io", "float"), "tensors_kept_float": kept,
                            "output_names": aliases,
                            "quantizer": "TFLiteConverter full-integer, QuantizationDebugger "
                                         "denylist"}
        for precision in ("float32", "float16"):
            src = work / "tf" / f"model_{precision}.tflite"
            if not src.is_file():
                tail = log.getvalue().strip().splitlines()[-5:]
                raise RuntimeError(f"onnx2tf wrote no {precision} TFLite file; its last output: "
                                   + " | ".join(tail))
            shutil.move(str(src), out_dir / src.name)
        return info


def serve() -> int:
    """Answer conversion requests from stdin until it closes (see the module docstring)."""
    reply = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # stray prints (python or C++) must not corrupt the protocol
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            info = convert(Path(request["model"]).resolve(), Path(request["out"]).resolve(),
                           request.get("int8"))
            answer = {"ok": True, "info": info}
        except Exception as exc:  # report and keep serving; the caller decides
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        reply.write(json.dumps(answer) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?")
    parser.add_argument("out_dir", type=Path, nargs="?")
    parser.add_argument("--serve", action="store_true",
                        help="convert the JSON requests read from stdin, one per line")
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    if args.model is None or args.out_dir is None:
        parser.error("MODEL and OUT_DIR are required without --serve")
    info = convert(args.model.resolve(), args.out_dir.resolve())
    sys.stdout.write(json.dumps(info) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
