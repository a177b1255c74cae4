"""``nnfc train``: train a model factory from a TOML config and write its bundle."""

from __future__ import annotations

import click

from nnfc.commands.options import AliasedOption

from nnfc.outputs import nonempty_path


@click.command(help="Train a model factory (gated supernet + assembler) from a TOML config and "
                    "write the bundle to -o/--output. Runs unchanged under "
                    "`torchrun --nproc_per_node N` (DistributedDataParallel).")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="TOML config (see configs/numvqa-*.toml).")
@click.option("-o", "--output", "--out", "out", required=True, cls=AliasedOption,
              hidden_aliases=("--out",), type=click.Path(file_okay=False),
              callback=nonempty_path,
              help="Bundle directory to write, e.g. factories/NAME.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              callback=nonempty_path,
              help="Where checkpoints go (default: <out>.ckpt beside the bundle).")
@click.option("--epochs", type=int, default=None, help="Override train.epochs.")
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option("--threads", type=click.IntRange(1, None), default=None,
              help="Override train.threads (CPU threads; a run may resume with another "
                   "count).")
@click.option("--stop-after", type=click.IntRange(1, None), default=None,
              help="Stop after this epoch, leaving a checkpoint (continue with --resume).")
@click.option("--quiet", "--no-progress", "no_progress", is_flag=True, cls=AliasedOption,
              hidden_aliases=("--no-progress",), help="One JSON line per epoch instead of a bar.")
@click.option("--force", is_flag=True,
              help="Also write into a non-empty directory that is not an nnfc bundle (adds "
                   "nnfc's files; never deletes or overwrites files nnfc did not write).")
def train(config_path: str, out: str, resume: bool, checkpoint_dir: str | None,
          epochs: int | None, seed: int | None, threads: int | None,
          stop_after: int | None, no_progress: bool, force: bool) -> None:
    from nnfc.training.config import load_config
    from nnfc.training.trainer import train_factory

    cfg = load_config(config_path, {"train.epochs": epochs, "seed": seed,
                                    "train.threads": threads})
    root = train_factory(cfg, out, resume=resume, checkpoint_dir=checkpoint_dir,
                         progress=not no_progress, log=lambda m: click.echo(m, err=True),
                         stop_after=stop_after, force=force)
    if root is not None:
        from nnfc.bundle import read_bundle
        metrics = read_bundle(root).manifest["training"]["metrics"]
        metric = metrics.get("metric", "accuracy")
        click.echo(f"wrote factory bundle {root}")
        for group in ("seen", "unseen"):
            for limit, m in metrics.get(group, {}).items():
                click.echo(f"  {group:6s} limit {float(limit):5.0%}: {metric} "
                           f"{m[metric]:.3f}, activation {m['activation_ratio']:.3f}")
