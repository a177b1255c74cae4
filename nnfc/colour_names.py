"""Colour words a person writes ("crimson", "navy", "sky blue") -> the nearest of a factory's
colour attributes, by CIEDE2000 colour difference in CIELAB, with a cutoff.

The names are matplotlib's XKCD survey colours and CSS4 colours (~950). A name that contains
one of the factory's colour words ("dark green", "jet black") is that colour.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from typing import Mapping

import numpy as np

#: CIEDE2000 difference beyond which a colour name matches no factory colour (about where a
#: person would no longer call the two the same colour: grey is neither white nor black)
CUTOFF = 20.0


def normalise(name: str) -> str:
    """Lower case, single spaces, no punctuation ("Sky-Blue" -> "sky blue")."""
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


@lru_cache(maxsize=1)
def colour_table() -> dict[str, tuple[float, float, float]]:
    """Normalised colour name -> sRGB in [0, 1]: XKCD, then CSS4 (CSS4 wins on a clash; CSS4
    names written together, "darkgreen", also answer to "dark green" through the XKCD name)."""
    data = _color_data()
    table: dict[str, tuple[float, float, float]] = {}
    for name, hexa in [*((k.removeprefix("xkcd:"), v) for k, v in data.XKCD_COLORS.items()),
                       *data.CSS4_COLORS.items()]:
        table[normalise(name)] = _hex_rgb(hexa)
    return table


def _color_data():
    """matplotlib's colour-name tables, loaded without importing matplotlib itself (~0.3 s)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        from nnfc.errors import NnfcError
        raise NnfcError("colour names need matplotlib: pip install matplotlib")
    path = f"{list(spec.submodule_search_locations)[0]}/_color_data.py"
    module_spec = importlib.util.spec_from_file_location("nnfc_mpl_color_data", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _hex_rgb(hexa: str) -> tuple[float, float, float]:
    h = hexa.lstrip("#")
    return tuple(int(h[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


def srgb_to_lab(rgb) -> np.ndarray:
    """CIELAB (D65) of sRGB values in [0, 1], shape [..., 3]."""
    rgb = np.asarray(rgb, np.float64)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def ciede2000(lab1, lab2) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), broadcasting over [..., 3]."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dl, dc = l2 - l1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dhh = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_mean, cp_mean = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = np.where(c1p * c2p == 0, h_sum,
                      np.where(np.abs(h1p - h2p) <= 180, h_sum / 2,
                               np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)))
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    sl = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    sc, sh = 1 + 0.045 * cp_mean, 1 + 0.015 * cp_mean * t
    rt = (-2 * np.sqrt(cp_mean ** 7 / (cp_mean ** 7 + 25.0 ** 7))
          * np.sin(np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2)))))
    return np.sqrt((dl / sl) ** 2 + (dc / sc) ** 2 + (dhh / sh) ** 2
                   + rt * (dc / sc) * (dhh / sh))


def nearest_colour(word: str, palette: Mapping[str, tuple[float, float, float]]
                   ) -> tuple[str, float] | None:
    """(factory colour, CIEDE2000 difference) for a colour name, or None when ``word`` is no
    colour name. A name containing one palette word ("dark green") is that colour (difference
    0); otherwise the nearest palette colour, whatever its distance (compare with ``CUTOFF``)."""
    name = normalise(word)
    rgb = colour_table().get(name) or colour_table().get(name.replace(" ", ""))
    if rgb is None:
        return None
    inside = [c for c in palette if c in name.split()]
    if len(inside) == 1:
        return inside[0], 0.0
    names = list(palette)
    diff = ciede2000(srgb_to_lab([palette[n] for n in names]), srgb_to_lab(rgb))
    i = int(np.argmin(diff))
    return names[i], float(diff[i])
