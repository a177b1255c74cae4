"""``nnfc prune``: fold gates into a gated supernet ONNX and remove gated-off channels."""

from __future__ import annotations

import json
import sys

import click

from nnfc.errors import NnfcError
from nnfc.outputs import check_output_file, nonempty_path

from nnfc.onnx_io import count_params, load_onnx, save_onnx
from nnfc.passes import apply_gates_with_report, gate_inputs, load_gates_json


#: the pruned model's doc_string: marks a file ``nnfc prune -o`` may replace
PRUNED_MARKER = "pruned by nnfc prune"


@click.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--gates", "gates_path", required=True, type=click.Path(dir_okay=False),
              help='Gates JSON: {"gate.<layer>": [0,1,...]} with one list per gate input.')
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              callback=nonempty_path,
              help="Where to write the pruned static ONNX model (- for standard output). "
                   "Never an input, never a file nnfc prune did not write.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--shapes", is_flag=True,
              help="Re-infer intermediate tensor shapes in the output (for viewers; runtimes "
                   "do not need them).")
def prune(model: str, gates_path: str, output: str, as_json: bool, shapes: bool) -> None:
    """Bind GATES into MODEL and physically remove every gated-off channel.

    The output has no gate inputs and computes what MODEL computes with those gates.
    """
    # no onnx.checker pass: it re-serializes the model (slower than pruning it); the passes
    # validate the gates and fail with one error naming the op on a graph they cannot handle
    out = check_output_file(output, PRUNED_MARKER.encode(), "pruned model",
                            inputs=[model, gates_path])
    if out is not None and not out.parent.is_dir():  # a typo'd path makes no directories
        raise NnfcError(f"-o {output}: the directory {out.parent} does not exist; create it "
                        "first or give another path")
    supernet = load_onnx(model, check=False)
    gates = load_gates_json(gates_path)
    pruned, reports = apply_gates_with_report(supernet, gates, infer_shapes=shapes)
    pruned.doc_string = PRUNED_MARKER  # lets a later prune -o recognise and replace this file
    if out is None:
        sys.stdout.buffer.write(pruned.SerializeToString())
        sys.stdout.flush()
    else:
        save_onnx(pruned, out)
    sizes = gate_inputs(supernet)
    summary = {
        "model": model, "output": output,
        "params": {"before": count_params(supernet), "after": count_params(pruned)},
        "activation_ratio": sum(float(v.sum()) for v in gates.values())
        / max(1, sum(sizes.values())),
        "gates": [{"gate": r.gate, "size": r.size, "active": r.active, "kept": r.kept,
                   "notes": r.notes} for r in reports],
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2), err=out is None)
        return
    p = summary["params"]
    click.echo(f"pruned {model} -> {output}: {p['before']:,} -> {p['after']:,} params "
               f"({p['after'] / max(1, p['before']):.1%}), activation "
               f"{summary['activation_ratio']:.1%}", err=out is None)
    for r in reports:
        extra = f" ({'; '.join(r.notes)})" if r.notes else ""
        if r.kept > r.active and r.active > 0:
            extra = f" — kept {r.kept - r.active} gated-off channel(s) that carry data{extra}"
        click.echo(f"  {r.gate}: {r.active}/{r.size} active{extra}", err=out is None)
