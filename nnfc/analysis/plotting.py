"""Shared figure conventions: a colour-blind-safe palette (Okabe & Ito), sizes readable at 100 %,
and atomic PNG / JSON writes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from nnfc.atomic import atomic_file

#: Okabe & Ito's palette: distinguishable with every common colour-vision deficiency
PALETTE = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
           "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000"}
SEEN_COLOUR, UNSEEN_COLOUR = PALETTE["blue"], PALETTE["vermillion"]
DPI = 100  # 1 figure inch = 100 px: the font sizes below are what a reader sees at 100 %


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, with readable default sizes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
                         "legend.fontsize": 10, "xtick.labelsize": 10, "ytick.labelsize": 10,
                         "axes.grid": True, "grid.alpha": 0.3})
    return plt


def save_png(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    plt = pyplot()
    path = Path(path)
    try:
        fig.tight_layout()
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path


def clean(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python numbers/lists and non-finite floats as None
    (JSON has no NaN)."""
    import numpy as np
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return round(v, 6) if math.isfinite(v) else None
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (numpy values converted, NaN as null)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(clean(data), indent=1) + "\n", encoding="utf-8")
    return path


def percent(x: float) -> str:
    """0.05 -> '5 %', 0.025 -> '2.5 %'."""
    return f"{100 * x:.3g} %"


def clustered_labels(xs, ys, labels, dx: float, dy: float, near: float = 0.05,
                     join: str = "/", suffix: str = "") -> list[tuple[tuple[float, float], str]]:
    """One label per chain of points each closer than ``near`` of the axis ranges ``dx``,
    ``dy`` to the previous one (their own labels would overprint): the members' labels joined
    with ``join`` (+ ``suffix``), placed at the chain's first point (points in the order
    given)."""
    clusters: list[tuple[tuple[float, float], tuple[float, float], list[str]]] = []
    for x, y, label in zip(xs, ys, labels):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        if clusters:
            first, (lx, ly), members = clusters[-1]
            if abs(x - lx) / (dx or 1.0) < near and abs(y - ly) / (dy or 1.0) < near:
                members.append(label)
                clusters[-1] = (first, (x, y), members)
                continue
        clusters.append(((x, y), (x, y), [label]))
    return [(first, join.join(members) + suffix) for first, _, members in clusters]
