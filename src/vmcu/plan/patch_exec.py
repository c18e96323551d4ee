"""Run patch-based and stream plans with the NumPy reference kernels: the executable spec of both schedules.

Each stage op runs on exactly the input region its `OpTile` names, with the padding it names, through the
same reference kernel the whole-graph executor uses (only the shapes and the padding in its params change),
so the result must equal `run_reference` bit for bit; the later stage then runs layer by layer. The
executors hold only what the plan says exists: per tile, tile-sized buffers no larger than their planned
bytes; for a stream, ring buffers of the planned capacity that record which pixel each slot holds, so a
read of a pixel the ring no longer holds fails instead of silently reading stale data.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np

from vmcu.errors import PlanError, UnsupportedOpError, VerifyError
from vmcu.frontend.tflite import NUMPY_DTYPES
from vmcu.ir.graph import NO_TENSOR, Graph
from vmcu.ir.params import op_params
from vmcu.plan.patch import PatchPlan, rest_graph
from vmcu.plan.receptive import OpTile, Padding, Region
from vmcu.plan.stream import RingBuffer, StreamPlan
from vmcu.reference.executor import run_reference
from vmcu.reference.kernels import REFERENCE_KERNELS


def tile_params(params: Any, input_shapes: dict[int, tuple[int, ...]], output_shape: tuple[int, ...],
                padding: Padding) -> Any:
    """An op's params for running it on a tile: tile shapes (`input_shapes` by input position) and the
    tile's padding in place of the whole tensor's."""
    names = {f.name for f in fields(params)}
    changes: dict[str, Any] = {}
    if "pad_top" in names:
        changes |= {"pad_top": padding.top, "pad_bottom": padding.bottom, "pad_left": padding.left,
                    "pad_right": padding.right}
    if "paddings" in names:
        changes["paddings"] = ((0, 0), (padding.top, padding.bottom), (padding.left, padding.right), (0, 0))
    if "input_shape" in names and 0 in input_shapes:
        changes["input_shape"] = input_shapes[0]
    for pos, name in enumerate(("input1_shape", "input2_shape")):
        if name in names and pos in input_shapes:
            shape = input_shapes[pos]
            changes[name] = (1,) * (len(output_shape) - len(shape)) + tuple(shape)
    if "requires_broadcast" in names:
        changes["requires_broadcast"] = (changes.get("input1_shape", params.input1_shape)
                                         != changes.get("input2_shape", params.input2_shape))
    for name in ("output_shape", "shape"):
        if name in names:
            changes[name] = output_shape
    return replace(params, **changes)


def run_op_tile(graph: Graph, tile: OpTile, regions: dict[int, np.ndarray]) -> np.ndarray:
    """Run one stage op on one tile; `regions` maps each activation input's position to the array of the
    region the tile reads (constants come from the graph)."""
    op = graph.ops[tile.op]
    kernel = REFERENCE_KERNELS.get(op.type)
    if kernel is None:
        raise UnsupportedOpError(f"op {op.index}: operator {op.type} is not supported")
    out = graph.tensors[op.outputs[0]]
    out_shape = (out.shape[0], tile.output.height, tile.output.width, out.shape[3])
    padding = next((i.padding for i in tile.inputs if i.position == 0), Padding())
    params = tile_params(op_params(graph, op), {p: a.shape for p, a in regions.items()}, out_shape, padding)
    args = [None if t == NO_TENSOR else regions[pos] if pos in regions else graph.tensors[t].data
            for pos, t in enumerate(op.inputs)]
    return np.asarray(kernel(params, args), dtype=NUMPY_DTYPES[out.dtype]).reshape(out_shape)


def _image(graph: Graph, image: int, inputs: list[np.ndarray]) -> np.ndarray:
    if len(inputs) != len(graph.inputs):
        raise VerifyError(f"{graph.name}: {len(inputs)} inputs given, the model has {len(graph.inputs)}")
    t = graph.tensors[image]
    x = np.asarray(inputs[graph.inputs.index(image)])
    if x.size != t.size:
        raise VerifyError(f"{graph.name}: input '{t.name}' needs {t.size} elements, got {x.size}")
    return x.astype(NUMPY_DTYPES[t.dtype]).reshape(t.shape)


def _empty(graph: Graph, tensor: int, r: Region) -> np.ndarray:
    """The input of a tile that lies wholly in padding: no pixel of the tensor, only its shape."""
    t = graph.tensors[tensor]
    return np.zeros((t.shape[0], r.height, r.width, t.shape[3]), dtype=NUMPY_DTYPES[t.dtype])


def _crop(held: tuple[Region, np.ndarray], want: Region) -> np.ndarray:
    region, array = held
    if not region.contains(want):
        raise PlanError(f"a tile reads {want}, but only {region} of that tensor exists")
    return array[:, want.y0 - region.y0:want.y1 - region.y0, want.x0 - region.x0:want.x1 - region.x0, :]


def _finish(graph: Graph, split: int, stage_output: int, value: np.ndarray) -> dict[int, np.ndarray]:
    values = {stage_output: value}
    if split < len(graph.ops):
        values |= run_reference(rest_graph(graph, split), [value])
    return values


def run_patch_plan(graph: Graph, plan: PatchPlan, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Run the stage tile by tile, then the rest layer by layer; returns the stage output and every
    tensor of the later stage by index (as `run_reference` does for the whole graph)."""
    image = _image(graph, plan.image, inputs)
    t = graph.tensors[plan.stage_output]
    stage_out = np.zeros(t.shape, dtype=NUMPY_DTYPES[t.dtype])
    planned = {p.tensor: p.size_bytes for p in plan.tile_buffers}
    whole = Region(0, image.shape[1], 0, image.shape[2])
    for tile in plan.tiles:
        held = {plan.image: (whole, image)}
        for op_tile in tile.ops:
            regions = {i.position: _crop(held[i.tensor], i.region) if i.region.area else
                       _empty(graph, i.tensor, i.region) for i in op_tile.inputs}
            out = run_op_tile(graph, op_tile, regions)
            r = op_tile.output
            tensor = graph.ops[op_tile.op].outputs[0]
            if tensor == plan.stage_output:
                stage_out[:, r.y0:r.y1, r.x0:r.x1, :] = out
            elif out.nbytes > planned.get(tensor, 0):
                raise PlanError(f"tile ({tile.row}, {tile.col}): tensor {tensor} needs {out.nbytes} B, "
                                f"the tile arena gives it {planned.get(tensor, 0)} B")
            else:
                held[tensor] = (r, out)
    return _finish(graph, plan.split, plan.stage_output, stage_out)


class _Ring:
    """A ring buffer of pixels in raster order that remembers which pixel each slot holds."""

    def __init__(self, ring: RingBuffer, channels: int, dtype: Any) -> None:
        self.ring = ring
        self.data = np.zeros((ring.pixels, channels), dtype=dtype)
        self.tags = np.full(ring.pixels, -1, dtype=np.int64)

    def _index(self, r: Region) -> np.ndarray:
        ys, xs = np.meshgrid(np.arange(r.y0, r.y1), np.arange(r.x0, r.x1), indexing="ij")
        return (ys * self.ring.width + xs).reshape(-1)

    def write(self, r: Region, values: np.ndarray) -> None:
        index = self._index(r)
        self.data[index % self.ring.pixels] = values.reshape(index.size, -1)
        self.tags[index % self.ring.pixels] = index

    def read(self, r: Region) -> np.ndarray:
        index = self._index(r)
        slots = index % self.ring.pixels
        if not np.array_equal(self.tags[slots], index):
            raise PlanError(f"the ring of tensor {self.ring.tensor} ({self.ring.pixels} pixels) no longer holds "
                            f"all of {r}")
        return self.data[slots].reshape(1, r.height, r.width, -1)


def run_stream_plan(graph: Graph, plan: StreamPlan, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Run the stage chunk by chunk through its ring buffers, then the rest layer by layer; returns what
    `run_patch_plan` returns."""
    image = _image(graph, plan.image, inputs)
    t = graph.tensors[plan.stage_output]
    stage_out = np.zeros(t.shape, dtype=NUMPY_DTYPES[t.dtype])
    rings = {r.tensor: _Ring(r, graph.tensors[r.tensor].shape[3], NUMPY_DTYPES[graph.tensors[r.tensor].dtype])
             for r in plan.rings}
    for op_tile in plan.steps:
        regions = {}
        for i in op_tile.inputs:
            if i.region.area == 0:
                regions[i.position] = _empty(graph, i.tensor, i.region)
            elif i.tensor == plan.image:
                r = i.region
                regions[i.position] = image[:, r.y0:r.y1, r.x0:r.x1, :]
            else:
                regions[i.position] = rings[i.tensor].read(i.region)
        out = run_op_tile(graph, op_tile, regions)
        tensor = graph.ops[op_tile.op].outputs[0]
        r = op_tile.output
        if tensor == plan.stage_output:
            stage_out[:, r.y0:r.y1, r.x0:r.x1, :] = out
        else:
            rings[tensor].write(r, out)
    return _finish(graph, plan.split, plan.stage_output, stage_out)
