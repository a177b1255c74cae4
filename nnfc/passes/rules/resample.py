"""``Resize`` / ``Upsample`` of the spatial axes and ``Pad`` of the spatial axes: the channel axis
keeps its size; interpolation weights sum to one, so a constant plane stays that constant."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from nnfc.passes.channel_state import ChannelState, same
from nnfc.passes.graph_utils import attr, const_array, is_const, new_initializer, rank_of
from nnfc.passes.rules.base import PassThroughRule


def channel_axis(value: ir.Value, layout) -> int | None:
    rank = rank_of(value)
    return None if rank is None or rank + layout.axis < 0 else rank + layout.axis


class ResizeRule(PassThroughRule):
    """Resize / Upsample that leaves the channel axis alone (scale 1 or size = channels)."""

    role = "channelwise"

    def layouts(self, node, value, layout, gated=None):
        x, out = node.inputs[0], node.outputs[0]
        chan = channel_axis(x, layout)
        if chan is None or value not in (x, out) or (
                attr(node, "coordinate_transformation_mode", "") == "tf_crop_and_resize"):
            return None
        axes = attr(node, "axes")
        rank = rank_of(x)
        if axes is not None:
            axes = [int(a) % rank for a in axes]
            if chan not in axes:
                return {x: layout, out: layout}
            chan = axes.index(chan)
        scale_index, size_index = (1, None) if node.op_type == "Upsample" else (2, 3)
        scales = const_array(node.inputs[scale_index]) if len(node.inputs) > scale_index \
            else None
        sizes = const_array(node.inputs[size_index]) if size_index is not None \
            and len(node.inputs) > size_index else None
        if scales is None and node.op_type == "Upsample":
            scales = attr(node, "scales")
        if scales is not None and len(scales) > chan and float(scales[chan]) == 1.0:
            return {x: layout, out: layout}
        if sizes is not None and len(sizes) > chan and int(sizes[chan]) == layout.full:
            return {x: layout, out: layout}
        return None

    def zero_preserving(self, node) -> bool:
        return True


    def slice(self, slicer, node, region) -> None:
        if node.op_type != "Resize" or len(node.inputs) < 4 or node.inputs[3] is None:
            return  # scales leave the channel axis alone
        layout = region.layout(node.outputs[0])
        sizes = const_array(node.inputs[3]).copy()
        rank = rank_of(node.inputs[0])
        chan = rank + layout.axis
        axes = attr(node, "axes")
        if axes is not None:
            axes = [int(a) % rank for a in axes]
            if chan not in axes:
                return
            chan = axes.index(chan)
        sizes[chan] = slicer.keep_index(layout).size
        node.replace_input_with(3, new_initializer(slicer.graph, sizes, "resize_sizes"))


def pad_amounts(node: ir.Node, rank: int) -> np.ndarray | None:
    """Pads as ``[rank, 2]`` (begin, end) per axis, or None when not constant."""
    pads = const_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None \
        else attr(node, "pads")
    if pads is None:
        return None
    pads = np.asarray(pads, np.int64).reshape(2, -1).T
    axes = const_array(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None \
        else None
    if len(node.inputs) > 3 and node.inputs[3] is not None and axes is None:
        return None
    full = np.zeros((rank, 2), np.int64)
    full[[int(a) % rank for a in axes] if axes is not None else list(range(len(pads)))] = pads
    return full


class PadRule(PassThroughRule):
    """Pad of the spatial axes only; a uniform plane stays uniform when padded with its own
    value or its edges."""

    role = "channelwise"

    def layouts(self, node, value, layout, gated=None):
        x, out = node.inputs[0], node.outputs[0]
        rank = rank_of(value)
        pads = pad_amounts(node, rank) if rank is not None else None
        if pads is None or np.any(pads[rank + layout.axis] != 0):
            return None
        if len(node.inputs) > 2 and node.inputs[2] is not None and not is_const(node.inputs[2]):
            return None
        return {x: layout, out: layout}

    def transfer(self, node, out, layout, src, ctx) -> ChannelState:
        if attr(node, "mode", "constant") in ("edge", "reflect", "wrap"):
            return same(src)
        fill = const_array(node.inputs[2]) if len(node.inputs) > 2 and \
            node.inputs[2] is not None else None
        fill = 0.0 if fill is None or fill.size == 0 else float(fill.reshape(-1)[0])
        const = src.const & (src.val == fill)
        return ChannelState(const, np.where(const, src.val, 0).astype(np.float32))
