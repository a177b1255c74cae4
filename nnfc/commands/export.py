"""``nnfc export``: a gated supernet preset to ONNX, or a training checkpoint to a bundle."""

from __future__ import annotations

import json

import click

from nnfc.commands.options import AliasedOption

from nnfc.outputs import nonempty_path

from nnfc.errors import NnfcError


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@click.command(help="Export a gated supernet preset (or family) to ONNX with one gate input "
                    "per layer (--preset … --out FILE.onnx), or write a factory bundle from a "
                    "training checkpoint (--checkpoint DIR --out BUNDLE_DIR).")
@click.option("--preset", default=None, help="Backbone preset or family, e.g. resnet-tiny.")
@click.option("--checkpoint", type=click.Path(file_okay=False), default=None,
              help="Training checkpoint directory (from `nnfc train`), or a factory bundle "
                   "to re-export.")
@click.option("-o", "--output", "--out", "out", required=True, cls=AliasedOption,
              hidden_aliases=("--out",), type=click.Path(), callback=nonempty_path,
              help="Output ONNX file or bundle dir.")
@click.option("--input-shape", default="1,3,32,32", show_default=True,
              help="Input shape with batch (preset export).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a backbone argument (JSON value), e.g. --set widths=[8,16].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random weights (preset export).")
@click.option("--force", is_flag=True,
              help="--checkpoint: also write into a non-empty directory that is not an nnfc "
                   "bundle (never deletes or overwrites files nnfc did not write).")
def export(preset: str | None, checkpoint: str | None, out: str, input_shape: str,
           overrides: tuple[str, ...], seed: int, force: bool) -> None:
    if (preset is None) == (checkpoint is None):
        raise NnfcError("give exactly one of --preset or --checkpoint")
    if checkpoint is not None:
        from nnfc.training.trainer import export_checkpoint
        root = export_checkpoint(checkpoint, out, force=force)
        click.echo(f"wrote factory bundle {root}")
        return
    from nnfc.outputs import check_output_file
    from nnfc.training.export import EXPORT_MARKER
    if check_output_file(out, EXPORT_MARKER.encode(), "exported supernet", option="-o") is None:
        raise NnfcError("-o needs an ONNX file path (standard output is not supported)")
    import torch

    from nnfc.training.backbones import build_backbone
    from nnfc.training.export import export_supernet

    try:
        shape = tuple(int(d) for d in input_shape.split(","))
    except ValueError as exc:
        raise NnfcError(f"--input-shape {input_shape!r} must be comma-separated integers") from exc
    cfg = {}
    for item in overrides:
        if "=" not in item:
            raise NnfcError(f"--set {item!r} must be KEY=VALUE")
        key, val = item.split("=", 1)
        cfg[key.strip()] = _parse_value(val)
    cfg.setdefault("in_channels", shape[1])
    torch.manual_seed(seed)
    try:
        net = build_backbone(preset, **cfg)
    except (TypeError, ValueError) as exc:
        raise NnfcError(f"--preset {preset}: {exc}") from exc
    export_supernet(net, out, shape)
    layers = net.gate_layers()
    click.echo(f"wrote {out}: {len(layers)} gate layers, "
               f"{sum(g.size for g in layers)} gate entries")
