"""Code for patch-based (MCUNetV2) and stream (StreamNet) plans: the stage region by region, then the later
layers with the tensor-level body. `vmcu.plan.patch_exec` is the specification every call here follows:
each stage op runs on the input region its `OpTile` names, with that tile's shapes and padding.

Arena. The image lives in the arena, as in TFLM (the caller writes it through `<model>_input(0)`), so the
planned bytes are the planner's `peak_bytes_with_input`: max(image + stage output + tile arena or rings,
later layers). The stage output must sit where the later plan puts it; the image and the tile arena (the
rings) go below or above it, and the later plan moves up only if neither fits below, so the planned bytes
equal the planner's figure whenever any such placement does. Scratch follows the planned bytes as for every
strategy; the stage's own (kernel scratch and staging areas) takes the room above the stage when the later
layers leave enough.

Kernels want contiguous NHWC buffers, and stage ops read windows of bigger buffers (kernels/ref/stage_io.c):
- patch: one kernel call per op and tile when its input windows and its output are contiguous in their
  buffers (tile buffers hold exactly what the tile computes), else one call per output row: a row of a
  tile is contiguous in the full stage output, and a window narrower than its buffer (a conv reading the
  image) is gathered row by row, kernel-height rows at a time instead of the whole tile region, so the
  staging costs a few hundred bytes where a copy of the image tile would cost the tile (and no variant of
  the tuned kernels with an input row stride is needed).
- stream: the plan's steps become a table (op, chunk, row) walked by one loop; per op and chunk a static
  params struct whose row fields (input height, top and bottom padding) a window op sets at run time from
  vmcu_axis_rows. Windows and output runs are used in place in their rings unless they wrap or skip
  columns; those are gathered into (or staged from) scratch areas sized by the steps that need them.
  Copying rather than rows-pointer variants of every tuned kernel: the VWW stream (8 chunks per row)
  gathers 664 kB per inference against 67 M instructions, about 1% of them; MCUNetV2-large's (whole rows)
  1.3 MB against 540 M. The price is the staging areas (3.3 kB and 32 kB there), reported as scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from vmcu.codegen.program import C_TYPES, Body, ConstTable
from vmcu.codegen.tensor import tensor_body
from vmcu.errors import BuildError
from vmcu.ir.graph import NO_TENSOR, Graph, Tensor
from vmcu.ir.params import op_params
from vmcu.kernels.cparams import MAX_DIMS, STRUCTS, KernelBinding, _c_int, kernel_binding
from vmcu.plan.lifetimes import align_up
from vmcu.plan.patch import PatchPlan, RestPlan, cuts, pixel_bytes
from vmcu.plan.patch_exec import tile_params
from vmcu.plan.plan import MemoryPlan
from vmcu.plan.receptive import OpTile, Padding, Region, StageStep, build_stage, step_tile
from vmcu.plan.stream import StreamPlan

ALIGN = 4


def _cast(t: Tensor, expr: str, *, const: bool) -> str:
    """A byte pointer expression as a pointer to the tensor's element type."""
    ctype = C_TYPES[t.dtype]
    if ctype == "int8_t":
        return expr
    q = "const " if const else ""
    return f"({q}{ctype} *)({q}void *)({expr})"


def _shape(graph: Graph, tensor: int, r: Region) -> tuple[int, int, int, int]:
    t = graph.tensors[tensor]
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise BuildError(f"{graph.name}: stage tensor {tensor} {list(t.shape)} is not one NHWC image")
    return (1, r.height, r.width, t.shape[3])


class _Params:
    """Static params structs of the stage's kernel calls, one per distinct value, sharing per-channel
    tables; the largest kernel scratch any of them needs."""

    def __init__(self, graph: Graph, variant: str, constants: ConstTable) -> None:
        self.graph, self.variant, self.constants = graph, variant, constants
        self.definitions: list[str] = []
        self.scratch = 0
        self._structs: dict[Any, str] = {}
        self._tables: dict[tuple[int, ...], str] = {}
        self._op_params: dict[int, Any] = {}

    def binding(self, tile: OpTile) -> KernelBinding:
        """The kernel call for one op on one tile: `run_op_tile`'s params, as C values."""
        op = self.graph.ops[tile.op]
        if tile.op not in self._op_params:
            self._op_params[tile.op] = op_params(self.graph, op)
        shapes = {i.position: _shape(self.graph, i.tensor, i.region) for i in tile.inputs}
        padding = next((i.padding for i in tile.inputs if i.position == 0), Padding())
        params = tile_params(self._op_params[tile.op], shapes, _shape(self.graph, op.outputs[0], tile.output),
                             padding)
        b = kernel_binding(op.type, params, self.variant)
        self.scratch = max(self.scratch, b.scratch_bytes)
        return b

    def symbol(self, b: KernelBinding, values: dict[str, Any] | None = None) -> str:
        """Name of the static struct holding `values` (default: the binding's own)."""
        values = b.values if values is None else values
        key = (b.struct, tuple(values.items()))
        if key not in self._structs:
            name = self._structs[key] = f"sp{len(self._structs)}"
            members = "".join(f"    .{f.name} = {self._value(f.kind, values[f.name])},\n" for f in STRUCTS[b.struct])
            self.definitions.append(f"static const {b.struct} {name} = {{\n{members}}};\n")
        return self._structs[key]

    def _value(self, kind: str, v: Any) -> str:
        if kind == "table":
            if v not in self._tables:
                name = self._tables[v] = f"st{len(self._tables)}"
                self.definitions.append(f"static const int32_t {name}[{max(len(v), 1)}] = "
                                        f"{{{', '.join(map(_c_int, v)) or '0'}}};\n")
            return self._tables[v]
        if kind == "array":
            return "{" + ", ".join(map(_c_int, v)) + "}"
        if kind == "pairs":
            return "{" + ", ".join(f"{{{_c_int(b)}, {_c_int(a)}}}" for b, a in v) + "}"
        return repr(float(v)) if kind == "double" else _c_int(v)

    def call(self, op_index: int, b: KernelBinding, params: str, inputs: dict[int, str], output: str) -> str:
        """The kernel call: activation inputs by position (C byte-pointer expressions), constants from flash."""
        op = self.graph.ops[op_index]
        args = []
        for role in b.args:
            if role == "output":
                args.append(_cast(self.graph.tensors[op.outputs[0]], output, const=False))
            elif role == "scratch":
                args.append("KSCRATCH")
            elif not role.startswith("input") or role == "inputs":
                raise BuildError(f"op {op_index} {op.type}: no stage code for a kernel taking '{role}'")
            else:
                n = int(role.removeprefix("input"))
                t = op.inputs[n] if n < len(op.inputs) else NO_TENSOR
                if t == NO_TENSOR:
                    args.append("NULL")
                elif n in inputs:
                    args.append(_cast(self.graph.tensors[t], inputs[n], const=True))
                else:
                    args.append(self.constants.ref(self.graph.tensors[t]))
        return f"{b.symbol}({params}, {', '.join(args)});"


@dataclass(frozen=True)
class _Buffer:
    """A region of a stage tensor held row-major at an arena offset (a whole tensor, or a tile buffer)."""

    offset: int
    region: Region
    pixel_bytes: int

    def at(self, y: int, x: int) -> int:
        return self.offset + ((y - self.region.y0) * self.region.width + x - self.region.x0) * self.pixel_bytes

    def contiguous(self, r: Region) -> bool:
        """Whether a window of this buffer is one run of it: a single row, or full rows."""
        return r.height <= 1 or (r.x0, r.x1) == (self.region.x0, self.region.x1)


@dataclass(frozen=True)
class _Row:
    """One output row of an op tile: its call, and per input (position, offset, rows gathered or 0, bytes
    per gathered row), and the output offset."""

    binding: KernelBinding
    params: str
    inputs: tuple[tuple[int, int, int, int], ...]
    output: int

    def offsets(self) -> tuple[int, ...]:
        return (*(i[1] for i in self.inputs), self.output)

    def shape(self) -> tuple[Any, ...]:
        return self.params, tuple((pos, rows, size) for pos, _, rows, size in self.inputs)

    def step_to(self, other: _Row) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.offsets(), other.offsets(), strict=True))


@dataclass
class _Stage:
    """What a stage contributes: definitions, statements, the ops it runs and its scratch needs."""

    definitions: list[str]
    statements: list[str]
    order: list[int]
    kernel_scratch: int
    staging: dict[str, int]


def _stage_layout(items: dict[str, int], out_bytes: int, rest: MemoryPlan | None,
                  stage_output: int) -> tuple[dict[str, int], int, int]:
    """Offsets of the stage's buffers (`items` plus "output"), the shift of the later plan and the planned
    bytes: the stage output where the later plan has it, every other item below or above it, whichever
    placement needs the fewest bytes."""
    rest_at = rest.placement(stage_output).offset if rest is not None else 0
    rest_bytes = rest.peak_bytes if rest is not None else 0
    names = list(items)
    best: tuple[tuple[int, int, int], dict[str, int], int] | None = None
    for mask in range(1 << len(names)):
        below = [n for k, n in enumerate(names) if mask >> k & 1]
        need = sum(items[n] for n in below)
        shift = max(0, need - rest_at)
        offsets = {"output": rest_at + shift}
        at = offsets["output"] - need
        for n in below:
            offsets[n], at = at, at + items[n]
        at = offsets["output"] + out_bytes
        for n in names:
            if n not in below:
                offsets[n], at = at, at + items[n]
        end = max(at, shift + rest_bytes)
        if best is None or (end, shift, mask) < best[0]:
            best = ((end, shift, mask), offsets, shift)
    assert best is not None
    return best[1], best[2], best[0][0]


def _rest(graph: Graph, rest: RestPlan | None, split: int, shift: int, plan_bytes: int,
          variant: str) -> Body | None:
    """The later layers: the tensor-level body of the rest plan, its ops renumbered into the model and its
    offsets moved up by `shift`."""
    if rest is None:
        return None
    assert isinstance(rest.plan, MemoryPlan)
    moved = replace(rest.plan, graph_name=graph.name, order=tuple(split + i for i in rest.plan.order),
                    placements=tuple(replace(p, offset=p.offset + shift) for p in rest.plan.placements),
                    peak_bytes=plan_bytes)
    return tensor_body(graph, moved, variant)


def _body(graph: Graph, strategy: str, plan: PatchPlan | StreamPlan, stage: _Stage, offsets: dict[str, int],
          shift: int, plan_bytes: int, constants: ConstTable, variant: str) -> Body:
    """Stage and later layers as one body; stage scratch above the stage's buffers if the later layers
    leave room there, else in the scratch area after the planned bytes."""
    rest = _rest(graph, plan.rest, plan.split, shift, plan_bytes, variant)
    areas = {"KSCRATCH": stage.kernel_scratch, **stage.staging}
    need = sum(align_up(n, ALIGN) for n in areas.values())
    top = align_up(plan_bytes, ALIGN)
    stage_end = align_up(max(offsets["output"] + plan.stage_output_bytes,
                             *(offsets[k] + n for k, n in _items(plan).items())), ALIGN)
    at = stage_end if stage_end + need <= top else top
    defines = []
    for name, size in areas.items():
        defines.append(f"#define {name} (ARENA + {at})\n")
        at += align_up(size, ALIGN)
    rest_scratch = rest.scratch_bytes if rest is not None else 0
    arena = max(top + rest_scratch, at)
    io = dict(rest.io_offsets) if rest is not None else {plan.stage_output: offsets["output"]}
    io[plan.image] = offsets["image"]
    if rest is not None:
        constants.symbols.update(rest.constants.symbols)
    return Body(strategy=strategy, definitions=(*defines, *stage.definitions, *(rest.definitions if rest else ())),
                statements=(*stage.statements, *(rest.statements if rest else ())), constants=constants,
                plan_bytes=plan_bytes, scratch_bytes=arena - top, io_offsets=io,
                order=(*stage.order, *(rest.order if rest else ())))


def _items(plan: PatchPlan | StreamPlan) -> dict[str, int]:
    """The stage's buffers besides its output: the image, and the tile arena or the rings."""
    if isinstance(plan, PatchPlan):
        return {"image": plan.input_bytes, "tiles": plan.tile_arena_bytes}
    return {"image": plan.input_bytes, "rings": plan.ring_bytes}


def _layout(graph: Graph, plan: PatchPlan | StreamPlan) -> tuple[dict[str, int], int, int]:
    rest = plan.rest.plan if plan.rest is not None else None
    if rest is not None and not isinstance(rest, MemoryPlan):
        raise BuildError(f"{graph.name}: C code for the layers after the stage needs a tensor-level plan "
                         f"of them (rest strategy 'tensor'), not '{plan.rest.strategy}'")
    return _stage_layout(_items(plan), plan.stage_output_bytes, rest, plan.stage_output)


def patch_body(graph: Graph, plan: PatchPlan, variant: str) -> Body:
    """The stage tile by tile (ops in stage order within a tile), then the later layers."""
    offsets, shift, plan_bytes = _layout(graph, plan)
    constants = ConstTable()
    params = _Params(graph, variant, constants)
    steps = {s.op: s for s in build_stage(graph, plan.split).steps}
    image = graph.tensors[plan.image]
    out = graph.tensors[plan.stage_output]
    whole_image = _Buffer(offsets["image"], Region(0, image.shape[1], 0, image.shape[2]),
                          pixel_bytes(graph, plan.image))
    whole_out = _Buffer(offsets["output"], Region(0, out.shape[1], 0, out.shape[2]),
                        pixel_bytes(graph, plan.stage_output))
    tile_at = {p.tensor: offsets["tiles"] + p.offset for p in plan.tile_buffers}
    staging: dict[str, int] = {}
    statements = []
    for tile in plan.tiles:
        r = tile.output
        statements.append(f"    /* tile ({tile.row}, {tile.col}): stage output rows {r.y0}..{r.y1 - 1}, "
                          f"columns {r.x0}..{r.x1 - 1} */\n")
        held = {plan.image: whole_image}
        for op_tile in tile.ops:
            tensor = graph.ops[op_tile.op].outputs[0]
            dest = whole_out if tensor == plan.stage_output else _Buffer(
                tile_at[tensor], op_tile.output, pixel_bytes(graph, tensor))
            # a window wholly in padding reads nothing: its tensor may not exist in this tile
            sources = {i.position: held[i.tensor] if i.region.area else whole_image for i in op_tile.inputs}
            statements.append(f"    vmcu_mark({op_tile.op});\n")
            statements += _op_tile(graph, params, steps[op_tile.op], op_tile, sources, dest, staging)
            held[tensor] = dest
    stage = _Stage(params.definitions, statements, list(steps), params.scratch, staging)
    return _body(graph, "patch", plan, stage, offsets, shift, plan_bytes, constants, variant)


def _op_tile(graph: Graph, params: _Params, step: StageStep, tile: OpTile, sources: dict[int, _Buffer],
             dest: _Buffer, staging: dict[str, int]) -> list[str]:
    """One op on one tile: a single call if everything is contiguous, else row by row (see module doc)."""
    if dest.contiguous(tile.output) and all(sources[i.position].contiguous(i.region) for i in tile.inputs):
        b = params.binding(tile)
        ins = {i.position: f"ARENA + {_start(sources[i.position], i.region)}" for i in tile.inputs}
        call = params.call(tile.op, b, "&" + params.symbol(b), ins, f"ARENA + {_start(dest, tile.output)}")
        return [f"    {call}\n"]
    groups: list[list[_Row]] = []
    for y in range(tile.output.y0, tile.output.y1):
        rt = step_tile(graph, step, Region(y, y + 1, tile.output.x0, tile.output.x1))
        b = params.binding(rt)
        inputs = []
        for i in rt.inputs:
            src = sources[i.position]
            gather = 0 if src.contiguous(i.region) else i.region.height
            if gather:
                name = f"STAGE{i.position}"
                staging[name] = max(staging.get(name, 0), i.region.area * src.pixel_bytes)
            inputs.append((i.position, _start(src, i.region), gather, i.region.width * src.pixel_bytes))
        row = _Row(b, params.symbol(b), tuple(inputs), _start(dest, rt.output))
        last = groups[-1] if groups else None
        if last and last[0].shape() == row.shape() and (len(last) == 1
                                                        or last[-2].step_to(last[-1]) == last[-1].step_to(row)):
            last.append(row)
        else:
            groups.append([row])
    return [line for g in groups for line in _row_group(params, tile.op, g, sources)]


def _start(buf: _Buffer, r: Region) -> int:
    """Arena offset of a window's first pixel (the buffer's own for a window wholly in padding)."""
    return buf.at(r.y0, r.x0) if r.area else buf.offset


def _row_group(params: _Params, op_index: int, rows: list[_Row], sources: dict[int, _Buffer]) -> list[str]:
    """Consecutive output rows with the same params and offsets advancing evenly: one loop."""
    n, first = len(rows), rows[0]
    step = first.step_to(rows[1]) if n > 1 else (0,) * len(first.offsets())

    def expr(off: int, d: int) -> str:
        return f"ARENA + {off}" if d == 0 else f"ARENA + {off} + r * {d}"

    body, ins = [], {}
    for (pos, off, gather, row_bytes), d in zip(first.inputs, step, strict=False):
        if gather:
            src = sources[pos]
            body.append(f"vmcu_copy_rows(STAGE{pos}, {expr(off, d)}, {src.region.width * src.pixel_bytes}, "
                        f"{gather}, {row_bytes});")
            ins[pos] = f"STAGE{pos}"
        else:
            ins[pos] = expr(off, d)
    body.append(params.call(op_index, first.binding, f"&{first.params}", ins, expr(first.output, step[-1])))
    if n == 1:
        return [f"    {line}\n" for line in body]
    inner = "".join(f"        {line}\n" for line in body)
    return [f"    for (int32_t r = 0; r < {n}; ++r) {{\n{inner}    }}\n"]


# Row fields a window op's output row changes, as (field, index) paths: input height, padding before, after.
_ROW_PATHS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    **{s: (("input_shape", (1,)), ("pad_top", ()), ("pad_bottom", ())) for s in (
        "vmcu_conv_2d_params_t", "vmcu_depthwise_conv_2d_params_t", "vmcu_pool_2d_params_t")},
    "vmcu_pad_params_t": (("input_shape", (MAX_DIMS - 3,)), ("paddings", (MAX_DIMS - 3, 0)),
                          ("paddings", (MAX_DIMS - 3, 1))),
}


def _zeroed(value: Any, path: tuple[int, ...]) -> Any:
    if not path:
        return 0
    k = path[0]
    return (*value[:k], _zeroed(value[k], path[1:]), *value[k + 1:])


def _row_free(struct: str, values: dict[str, Any]) -> dict[str, Any]:
    """A struct's values with the row fields zeroed: what every row of one op and chunk shares."""
    out = dict(values)
    for name, path in _ROW_PATHS[struct]:
        out[name] = _zeroed(out[name], path)
    return out


@dataclass
class _StreamOp:
    """Per stage op: the template struct and column ranges of each chunk, and whether rows vary."""

    templates: dict[int, tuple[KernelBinding, str]]
    cols: dict[int, tuple[int, ...]]
    rows: set[tuple[tuple[int, int, int], ...]]

    def dynamic(self) -> bool:
        """Whether rows differ in input height or padding, so the call patches its row fields per step."""
        return len(self.rows) > 1 or any(top for row in self.rows for _, top, _ in row)


def _gathers(ring: tuple[int, int, int, int], r: Region) -> bool:
    """Whether vmcu_ring_read gathers this window (it is not one run of the ring)."""
    _, pixels, width, _ = ring
    if r.area == 0:
        return False
    first = (r.y0 * width + r.x0) % pixels
    return not ((r.height == 1 or r.width == width) and first + (r.height - 1) * width + r.width <= pixels)


def stream_body(graph: Graph, plan: StreamPlan, variant: str) -> Body:
    """The stage as a table of steps (op, chunk, row) run by one loop, then the later layers."""
    offsets, shift, plan_bytes = _layout(graph, plan)
    constants = ConstTable()
    params = _Params(graph, variant, constants)
    steps = {s.op: s for s in build_stage(graph, plan.split).steps}
    slot = {op: k for k, op in enumerate(steps)}
    if len(slot) > 256 or plan.column_chunks > 256 or any(max(graph.tensors[s.output].shape[1:3]) >= 1 << 15
                                                          for s in steps.values()):
        raise BuildError(f"{graph.name}: a stream stage of {len(slot)} ops, {plan.column_chunks} chunks per row "
                         "does not fit the step table (8-bit ops and chunks, 15-bit rows and columns)")
    rings = {}
    for t, where in ((plan.image, "image"), (plan.stage_output, "output")):
        _, h, w, _ = graph.tensors[t].shape
        rings[t] = (offsets[where], h * w, w, pixel_bytes(graph, t))
    for r in plan.rings:
        rings[r.tensor] = (offsets["rings"] + r.offset, r.pixels, r.width, r.pixel_bytes)
    bounds = {op: cuts(graph.tensors[s.output].shape[2], min(plan.column_chunks, graph.tensors[s.output].shape[2]))
              for op, s in steps.items()}
    bindings = [params.binding(st) for st in plan.steps]
    ops: dict[int, _StreamOp] = {}
    for st in plan.steps:
        ops.setdefault(st.op, _StreamOp({}, {}, set())).rows.add(
            tuple((i.region.height, i.padding.top, i.padding.bottom) for i in st.inputs))
    staging = {f"STAGE{i.position}": 0 for s in steps.values() for i in s.inputs} | {"STAGE_OUT": 0}
    table = []
    for st, b in zip(plan.steps, bindings, strict=True):
        chunk = bounds[st.op].index(st.output.x0)
        info = ops[st.op]
        symbol = params.symbol(b, _row_free(b.struct, b.values) if info.dynamic() else None)
        if chunk not in info.templates:
            info.templates[chunk] = (b, symbol)
            info.cols[chunk] = (st.output.x0, st.output.width, *(v for i in st.inputs for v in (i.region.x0,
                                                                                                i.region.width)))
        elif symbol != info.templates[chunk][1]:
            raise BuildError(f"op {st.op}: params of chunk {chunk} differ between rows beyond the row fields")
        for i in st.inputs:
            if i.region.area and _gathers(rings[i.tensor], i.region):
                name = f"STAGE{i.position}"
                staging[name] = max(staging[name], i.region.area * rings[i.tensor][3])
        out = rings[graph.ops[st.op].outputs[0]]
        if (st.output.y0 * out[2] + st.output.x0) % out[1] + st.output.width > out[1]:
            staging["STAGE_OUT"] = max(staging["STAGE_OUT"], st.output.width * out[3])
        table.append(slot[st.op] | chunk << 8 | st.output.y0 << 16)
    definitions = [f"static const vmcu_ring_t ring_t{t} = {{ARENA + {o}, {p}, {w}, {pb}}};\n"
                   for t, (o, p, w, pb) in sorted(rings.items())]
    cases = []
    for op, info in ops.items():
        definitions += _chunk_tables(graph, slot[op], info, len(bounds[op]) - 1)
        cases.append(_stream_case(graph, params, steps[op], slot[op], info, set(rings)))
    words = [f"0x{w:08X}u" for w in table]
    lines = ",\n    ".join(", ".join(words[k:k + 8]) for k in range(0, len(words), 8))
    definitions.append(f"/* The stream schedule: op slot | chunk << 8 | row << 16, in order. */\n"
                       f"static const uint32_t stream_steps[{len(table)}] = {{\n    {lines}\n}};\n\n"
                       f"static void stream_step(int32_t op, int32_t chunk, int32_t row) {{\n"
                       f"    switch (op) {{\n{''.join(cases)}    default:\n        break;\n    }}\n}}\n")
    statements = [f"    for (int32_t k = 0; k < {len(table)}; ++k) {{\n"
                  "        const uint32_t s = stream_steps[k];\n"
                  "        stream_step((int32_t)(s & 0xFFu), (int32_t)(s >> 8 & 0xFFu), (int32_t)(s >> 16));\n"
                  "    }\n"]
    stage = _Stage(params.definitions + definitions, statements, list(ops), params.scratch, staging)
    return _body(graph, "stream", plan, stage, offsets, shift, plan_bytes, constants, variant)


def _first_row(stride: int, offset: int) -> str:
    """The first input row output row `row` reads when no row of the op is padded: row * stride - offset."""
    expr = "row" if stride == 1 else f"row * {stride}" if stride else "0"
    return f"{expr} - {offset}" if offset else expr


def _chunk_tables(graph: Graph, k: int, info: _StreamOp, chunks: int) -> list[str]:
    """Per chunk of one op: its params struct and its columns (output x0, width, then each input's)."""
    struct = next(iter(info.templates.values()))[0].struct
    ptrs = ", ".join(f"&{info.templates[c][1]}" if c in info.templates else "NULL" for c in range(chunks))
    width = len(next(iter(info.cols.values())))
    cols = ", ".join("{" + ", ".join(map(str, info.cols.get(c, (0,) * width))) + "}" for c in range(chunks))
    return [f"static const {struct} *const s{k}_params[{chunks}] = {{{ptrs}}};\n",
            f"static const int16_t s{k}_cols[{chunks}][{width}] = {{{cols}}};\n"]


def _stream_case(graph: Graph, params: _Params, step: StageStep, k: int, info: _StreamOp, rings: set[int]) -> str:
    """The `case` running one op on one chunk of one row: rows of its window, ring pointers, the call. An
    input no step ever computes has no ring; it is only read by windows wholly in padding (rows 0)."""
    op = graph.ops[step.op]
    b = next(iter(info.templates.values()))[0]
    lines = [f"vmcu_mark({step.op});", f"const int16_t *cols = s{k}_cols[chunk];"]
    if info.dynamic():
        if b.struct not in _ROW_PATHS or len(step.inputs) != 1:
            raise BuildError(f"op {step.op} {op.type}: no stream code for rows of varying shape")
        m = step.inputs[0].map.rows
        lvalues = [name + "".join(f"[{j}]" for j in path) for name, path in _ROW_PATHS[b.struct]]
        lines += [f"{b.struct} p = *s{k}_params[chunk];", "int32_t a0, h0;",
                  f"vmcu_axis_rows(row, {m.stride}, {m.offset}, {m.extent}, {m.in_size}, &a0, &h0, "
                  f"&p.{lvalues[1]}, &p.{lvalues[2]});", f"p.{lvalues[0]} = h0;"]
        first, height, ref = {step.inputs[0].position: "a0"}, {step.inputs[0].position: "h0"}, "&p"
    else:
        (row,) = info.rows
        lines.append(f"const {b.struct} *p = s{k}_params[chunk];")
        first = {i.position: _first_row(i.map.rows.stride, i.map.rows.offset) for i in step.inputs}
        height = {i.position: str(h) for i, (h, _, _) in zip(step.inputs, row, strict=True)}
        ref = "p"
    ins = {}
    for j, i in enumerate(step.inputs):
        pos = i.position
        ring = i.tensor if i.tensor in rings else step.output
        lines.append(f"const int8_t *in{pos} = vmcu_ring_read(&ring_t{ring}, {first[pos]}, {height[pos]}, "
                     f"cols[{2 + 2 * j}], cols[{3 + 2 * j}], STAGE{pos});")
        ins[pos] = f"in{pos}"
    out = f"&ring_t{step.output}, row, cols[0], cols[1]"
    lines += [f"int8_t *out = vmcu_ring_slot({out}, STAGE_OUT);", params.call(step.op, b, ref, ins, "out"),
              f"vmcu_ring_commit({out}, out);", "break;"]
    body = "".join(f"        {line}\n" for line in lines)
    return f"    case {k}: {{  /* op {step.op} {op.type} */\n{body}    }}\n"
