"""The valid space of a layer's KernelConfigs (:mod:`codegen.kernel_config`).

Every parameter's range is derived from the layer and the target
(:func:`config_space`), so a search enumerates and samples only valid configs;
:meth:`ConfigSpace.validate` rejects an invalid one with a message that names
the field, the rule and the allowed values, before anything is compiled.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from codegen.kernel_config import KernelConfig
from codegen.target import Target
from pattune_common import ConfigError
from search_spaces.layers import LayerSpec

LOOP_ORDERS = ("block_group_tile", "group_block_tile", "block_group_filter", "tile_block_group")
THREAD_MAPPINGS = ("contiguous", "interleaved", "balanced")
FORMATS = ("fkw", "dense", "csr")
UNROLLS = (1, 2, 4)
# Software prefetch distance, in kernels (0 = off; see KernelConfig.prefetch).
PREFETCHES = (0, 1, 2, 3)
MAX_TILE_ROWS = 8
MAX_TILE_VECS = 8
MAX_OC_BLOCK = 64
# Registers kept free of accumulators: weight broadcasts and loaded input vectors.
_SPARE_REGISTERS = 6
LINE_FLOATS = 16  # floats per 64-byte cache line


def max_shift(spec: LayerSpec) -> int:
    """Largest column offset of a tap within its phase plane: ``(kw - 1) // stride``."""
    return (spec.kw - 1) // spec.stride


def pack_factor(spec: LayerSpec, vector_width: int) -> int:
    """Output rows one vector holds under ``KernelConfig.pack_rows``: ``vector_width //
    (out_w + 1)`` where that pitch divides the vector, for a 3 x 3, padding 1 layer at
    stride 1 (a row's right padding column is the next row's left one) or at stride 2 on
    an even-sized input (a phase plane's row is ``out_w + 1`` wide); else 1."""
    pitch, s = spec.out_w + 1, spec.stride
    even = s == 1 or (s == 2 and spec.h % 2 == 0 and spec.w % 2 == 0)
    ok = (spec.kh, spec.kw, spec.padding) == (3, 3, 1) and even and vector_width % pitch == 0
    return vector_width // pitch if ok else 1


def straddles(offset: int, vl: int) -> bool:
    """Whether ``vl`` floats loaded ``offset`` floats from a line-aligned row span two lines."""
    return offset % LINE_FLOATS + vl > LINE_FLOATS


def _pow2_upto(n: int, cap: int) -> list[int]:
    out, v = [], 1
    while v <= min(n, cap):
        out.append(v)
        v *= 2
    return out


@dataclass(frozen=True)
class ConfigSpace:
    """The valid KernelConfigs of one layer on one target.

    Attributes:
        layer: The layer's shape.
        target: The compile target.
        choices: Allowed values per KernelConfig field, in a fixed order.
    """

    layer: LayerSpec
    target: Target
    choices: dict[str, tuple[Any, ...]]
    min_accumulators: int = 1

    def max_accumulators(self) -> int:
        """Most tile_rows x tile_vecs accumulators that fit the target's registers."""
        return max(1, self.target.vector_registers - _SPARE_REGISTERS)

    def _least_accumulators(self) -> int:
        """``min_accumulators``, lowered to the largest tile this layer allows."""
        cap = self.max_accumulators()
        best = max((r * v for r in self.choices["tile_rows"] for v in self.choices["tile_vecs"]
                    if r * v <= cap), default=1)
        return min(self.min_accumulators, best)

    def validate(self, cfg: KernelConfig) -> KernelConfig:
        """Return ``cfg`` if every field is allowed; else raise ConfigError naming the rule.

        Raises:
            ConfigError: A field outside its allowed values, or a joint rule broken.
        """
        if not isinstance(cfg, KernelConfig):
            raise TypeError(f"expected a KernelConfig; got {type(cfg).__name__}")
        name = self.layer.name
        for field, allowed in self.choices.items():
            value = getattr(cfg, field)
            if value not in allowed or type(value) is not type(allowed[0]):
                raise ConfigError(
                    f"KernelConfig.{field} must be one of {_fmt(allowed)} for layer {name!r} "
                    f"on target {self.target.name!r}; got {value!r}"
                )
        acc = cfg.tile_rows * cfg.tile_vecs
        if cfg.shift_sums:
            self._check_shift_sums(cfg)
        if cfg.pack_rows:
            self._check_pack_rows(cfg)
        if acc > self.max_accumulators():
            raise ConfigError(
                f"KernelConfig.tile_rows x tile_vecs must be <= {self.max_accumulators()} "
                f"accumulators on target {self.target.name!r} "
                f"({self.target.vector_registers} vector registers); got "
                f"{cfg.tile_rows} x {cfg.tile_vecs} = {acc}"
            )
        # shift_sums' offset sums are independent FMA chains too.
        sums = 1 + max_shift(self.layer) if cfg.shift_sums else 1
        least = self._least_accumulators()
        if sums * acc < least:
            raise ConfigError(
                f"KernelConfig.tile_rows x tile_vecs must be >= {least} accumulators in this "
                f"space (min_accumulators); got {cfg.tile_rows} x {cfg.tile_vecs} = {acc}"
                + (f" ({sums * acc} with shift_sums)" if sums > 1 else "")
            )
        vecs_needed = math.ceil(self.layer.out_w / cfg.vector_width)
        if cfg.tile_vecs > vecs_needed:
            raise ConfigError(
                f"KernelConfig.tile_vecs must be <= {vecs_needed} (out_w {self.layer.out_w} / "
                f"vector_width {cfg.vector_width}, rounded up) for layer {name!r}; "
                f"got {cfg.tile_vecs}"
            )
        if cfg.tap_shuffle and (not cfg.lre or cfg.shifted):
            raise ConfigError(
                "KernelConfig.tap_shuffle needs lre=True and shifted=False (it shuffles the "
                "vectors LRE loads once, from the phase-plane layout); got "
                f"lre={cfg.lre}, shifted={cfg.shifted}"
            )
        if cfg.format == "csr" and cfg.lre:
            raise ConfigError(
                "KernelConfig.lre must be False when format is 'csr' (unstructured kernels "
                "have no known taps to share loads between); got True"
            )
        return cfg

    def shift_sums_fit(self, cfg: KernelConfig) -> str:
        """Why ``cfg``'s tile cannot shift sums (``""`` when it can): the offsets-``k``
        sums need their own registers, and their lanes must stay inside the tile."""
        k = max_shift(self.layer)
        lanes, cap = cfg.tile_vecs * cfg.vector_width, self.max_accumulators()
        if self.layer.out_w + k > lanes:
            return (f"the tile's {lanes} lanes (tile_vecs x vector_width) must hold out_w "
                    f"{self.layer.out_w} plus the {k} shifted columns")
        if (1 + k) * cfg.tile_rows * cfg.tile_vecs > cap:
            return (f"{1 + k} x tile_rows x tile_vecs accumulators must be <= {cap}; got "
                    f"{1 + k} x {cfg.tile_rows} x {cfg.tile_vecs}")
        return ""

    def _check_shift_sums(self, cfg: KernelConfig) -> None:
        why = "" if cfg.lre and not cfg.shifted and not cfg.tap_shuffle else (
            "it needs lre=True, shifted=False and tap_shuffle=False (aligned loads that LRE "
            f"shares); got lre={cfg.lre}, shifted={cfg.shifted}, tap_shuffle={cfg.tap_shuffle}")
        if why := why or self.shift_sums_fit(cfg):
            raise ConfigError(f"KernelConfig.shift_sums for layer {self.layer.name!r}: {why}")

    def _check_pack_rows(self, cfg: KernelConfig) -> None:
        lay, why, m = self.layer, "", pack_factor(self.layer, cfg.vector_width)
        if m < 2:
            why = (f"it needs a 3 x 3, padding 1 layer (stride 1, or 2 on an even-sized input) "
                   f"whose out_w + 1 divides vector_width {cfg.vector_width} at least twice; "
                   f"got out_w {lay.out_w}, stride {lay.stride}")
        elif (cfg.tile_vecs, cfg.tile_rows) != (1, rows := -(-lay.out_h // m)):
            why = (f"the tile must be {rows} x 1 (one tile of {m}-row vectors over the "
                   f"{lay.out_h} output rows); got {cfg.tile_rows} x {cfg.tile_vecs}")
        elif cfg.ic_block < lay.cin_per_group:
            why = f"it needs one channel block (ic_block {lay.cin_per_group}); got {cfg.ic_block}"
        elif cfg.shifted or cfg.out_prefetch:
            why = (f"it needs shifted=False and out_prefetch=False; got shifted="
                   f"{cfg.shifted}, out_prefetch={cfg.out_prefetch}")
        if why:
            raise ConfigError(f"KernelConfig.pack_rows for layer {lay.name!r}: {why}")

    def is_valid(self, cfg: KernelConfig) -> bool:
        """True when :meth:`validate` would accept ``cfg``."""
        try:
            self.validate(cfg)
        except ConfigError:
            return False
        return True

    def enumerate(self) -> Iterator[KernelConfig]:
        """Every valid config, in a fixed order (lazy: spaces can be large)."""
        names = list(self.choices)
        for values in itertools.product(*(self.choices[n] for n in names)):
            cfg = KernelConfig(**dict(zip(names, values, strict=True)))
            if self.is_valid(cfg):
                yield cfg

    def sample(self, rng: np.random.Generator, n: int) -> list[KernelConfig]:
        """Up to ``n`` distinct valid configs drawn uniformly per field (rejection)."""
        out: dict[str, KernelConfig] = {}
        tries = 0
        while len(out) < n and tries < 50 * n + 100:
            tries += 1
            values = {k: v[int(rng.integers(len(v)))] for k, v in self.choices.items()}
            cfg = KernelConfig(**values)
            if self.is_valid(cfg):
                out.setdefault(cfg.to_json(), cfg)
        return list(out.values())

    def default(self) -> KernelConfig:
        """A sensible valid config: the widest vectors that fill 3/4 of their lanes (8 on
        7-wide rows), a tile as wide as the output row where 3 rows of it fit (else 2
        vectors) and 4 to 8 rows that leave the fewest computed rows past the output (7 on
        28, 14 and 7 rows; 3 where only 3 fit), one spatial tile at a time for all filters
        (``tile_block_group``), FKR, LRE and out_prefetch on (where the space allows them),
        tap_shuffle where a tap load would straddle lines, phase planes, prefetch (``fkw``, s 1);
        :meth:`_packed_default` packs rows narrower than half a vector (7 wide on AVX-512)."""
        c = self.choices
        # The widest vectors among those filling the most of their lanes across the output
        # row (3/4 counts as full): 8 on a 7-wide row (16-float vectors compute 16 columns
        # for 7: 40% slower on ResNet-18's layer4.0.conv2), 16 on 14, 28, 56 and wider.
        # Narrower than 8 floats only where nothing wider exists: 4-float vectors fill a
        # 10-wide row better but issue half the lanes per FMA.
        ow, widest = self.layer.out_w, max(c["vector_width"])
        vw = max([v for v in c["vector_width"] if v >= min(8, widest)],
                 key=lambda v: (min(ow / (math.ceil(ow / v) * v), 0.75), v))
        vecs_needed = math.ceil(ow / vw)
        # The whole output row in one tile where 3 rows of it fit the registers: the
        # padded rows it reads are then consecutive in memory, (rows + 2) x vecs + 1 lines
        # per kernel instead of (rows + 2) x (vecs + 1). 4 x 4 on 56-wide rows took 7-10%
        # less time than 4 x 2 and 6 x 3 on VGG-16's features.10 and .14, 3 x 7 on 112-wide
        # ones 9-10% less than 4 x 2 (features.7), for the pattern and unstructured kernels
        # alike. Only with vectors of a whole 64-byte line (measured there; a narrower
        # vector's extra one is part of a line already read). Else 2 vectors.
        whole = (vw >= LINE_FLOATS and vecs_needed <= max(c["tile_vecs"])
                 and 3 * vecs_needed <= self.max_accumulators())
        vecs = vecs_needed if whole else min(2, vecs_needed, max(c["tile_vecs"]))
        fits = [r for r in c["tile_rows"] if r * vecs <= self.max_accumulators()]
        # 4 to 8 rows, computing the fewest rows past the output; among equals the most
        # when the tile spans the row (more rows share the 2 extra input rows: 7 x 2 took 6%
        # less time than 4 x 2 on the 28-wide features.19), else the fewest (7 rows were 6%
        # slower on the 224-wide features.2). With 16-float vectors: 7 on 28, 14 and 7
        # rows; 4 on 56 (4 x 4 fits, 7 x 4 does not) and on 224.
        oh = self.layer.out_h
        mid = [r for r in fits if 4 <= r <= 8]
        rows = (min(mid, key=lambda r: (-(-oh // r) * r - oh, -r if whole else r)) if mid
                else max([r for r in fits if r <= 4] or fits[:1]))
        least = self._least_accumulators()
        while rows * vecs < least and vecs < min(vecs_needed, max(c["tile_vecs"])):
            vecs += 1
        while rows * vecs < least and rows < max(fits):
            rows += 1
        pick = {
            "oc_block": min(c["oc_block"], key=lambda v: abs(v - 4)),
            "tile_rows": rows,
            "tile_vecs": vecs,
            "ic_block": max(c["ic_block"]),
            "unroll": 1 if 1 in c["unroll"] else c["unroll"][0],
            # One spatial tile at a time for every filter: the tile's input stays in cache
            # while all filters pass over it. block_group_tile streams a large layer's
            # whole input once per filter group (2.9x slower on VGG-16's features.2).
            "loop_order": ("tile_block_group" if "tile_block_group" in c["loop_order"]
                           else c["loop_order"][0]),
            "threads": c["threads"][0],
            "thread_mapping": "balanced" if "balanced" in c["thread_mapping"] else c[
                "thread_mapping"][0],
            "vector_width": vw,
            "fkr": True if True in c["fkr"] else c["fkr"][0],
            "lre": c["lre"][0] if len(c["lre"]) == 1 else c["format"][0] != "csr",
            "format": c["format"][0],
            # Aligned copies per kernel column triple the input's cache footprint: slower
            # on every VGG-16 layer (up to 2.3x); tap_shuffle aligns the loads instead.
            "shifted": False if False in c["shifted"] else c["shifted"][0],
        }
        # The pattern kernel's channels jump (a filter's kernels, sorted by pattern), which
        # hardware prefetchers do not follow: prefetching the next kernel's lines took 5%
        # off VGG-16's 3x3 layers at their default configs (geomean of 12; features.28 17%
        # faster, features.7 6% slower). Not at stride 2: there a kernel reads two phase
        # planes of 2 x rows + 1 input rows for its 4 x rows FMAs and is bound by its loads,
        # which the prefetches add to (12-20% slower on the six stride-2 3x3 layers of
        # ResNet-18 and -50). The unstructured kernel prefetches per weight and is bound by
        # its loads: 13-22% slower with it, so off there.
        pf = 1 if pick["format"] == "fkw" and self.layer.stride == 1 else 0
        pick["prefetch"] = pf if pf in c["prefetch"] else c["prefetch"][0]
        # tap_shuffle replaces tap loads that straddle lines; where none would (8-float vectors,
        # 7-wide rows) it is pure cost: ResNet-18's layer4.1.conv1 15% slower, layer4.0.conv1 2-9%.
        k = max_shift(self.layer)
        splits = any(straddles(x + k, vw) for x in range(0, self.layer.out_w, vw))
        can_shuffle = pick["lre"] and not pick["shifted"] and True in c["tap_shuffle"]
        pick["tap_shuffle"] = (can_shuffle and splits) or c["tap_shuffle"][0]
        # Sums shifted once per tile instead of inputs in every kernel, where the tile fits as
        # it is (AVX-512: the 14-wide rows' 7 x 1 tiles, 14- and 7-wide outputs at stride 2):
        # 13-14% less time on VGG-16's features.26 and ResNet-18's layer3.1.conv1, 9% on the
        # stride-2 layer3.0.conv1. Fewer rows to make room lose more to the extra input
        # lines than they save (28 and 56 wide: 2-10% slower).
        if self.is_valid(KernelConfig(**{**pick, "tap_shuffle": False, "shift_sums": True})):
            pick.update(tap_shuffle=False, shift_sums=True)
        # Output lines prefetched for writing: 15% less time on VGG-16's features.2 (its
        # 12.8 MB output misses every cache), within noise on outputs that stay in L2.
        pick["out_prefetch"] = True in c["out_prefetch"] or c["out_prefetch"][0]
        return self.validate(KernelConfig(**self._packed_default(pick)))

    def _packed_default(self, pick: dict[str, Any]) -> dict[str, Any]:
        """``pick`` with rows packed into the widest vectors holding two or more (7-wide rows
        in 16 floats), one tile shifting sums, where valid. Its 16-FMA kernels prefetch 3
        ahead at stride 1 (not at stride 2, as unpacked). Not ``csr``: bound by its loads,
        half of which would split lines (docs/codegen.md, pack_rows)."""
        vws = [v for v in self.choices["vector_width"] if pack_factor(self.layer, v) > 1]
        if not vws or True not in self.choices["pack_rows"] or pick["format"] == "csr":
            return pick
        vw, pf = max(vws), max(self.choices["prefetch"])
        packed = {**pick, "vector_width": vw, "tile_vecs": 1,
                  "tile_rows": -(-self.layer.out_h // pack_factor(self.layer, vw)),
                  "ic_block": max(self.choices["ic_block"]), "tap_shuffle": False,
                  "shift_sums": True, "out_prefetch": False, "pack_rows": True,
                  "prefetch": pf if self.layer.stride == 1 else pick["prefetch"]}
        return packed if self.is_valid(KernelConfig(**packed)) else pick


def _fmt(values: tuple[Any, ...]) -> str:
    if len(values) > 12:
        return f"{values[0]!r}..{values[-1]!r} ({len(values)} values)"
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


def config_space(layer: LayerSpec, target: Target, *, min_accumulators: int = 1,
                 **fixed: Any) -> ConfigSpace:
    """The valid configs of ``layer`` on ``target``, with some fields optionally pinned.

    Args:
        layer: The layer's shape.
        target: The compile target.
        min_accumulators: Smallest register tile (tile_rows x tile_vecs) to admit,
            lowered to the largest tile the layer allows (a search prior: tiny tiles
            cannot hide FMA latency).
        **fixed: KernelConfig field -> one value or a tuple of values to restrict to
            (e.g. ``threads=2``, ``format="csr"``, ``lre=False``). Each must lie in the
            field's derived range. Pinning ``threads=1`` also pins ``thread_mapping``
            (unless given) to ``"balanced"``: with one thread the mapping changes nothing.

    Raises:
        ConfigError: Unknown field, or a pinned value outside its derived range.
    """
    vws = tuple(v for v in (4, 8, 16) if v <= target.vector_floats) or (target.vector_floats,)
    cin = layer.cin_per_group
    icb = sorted({cin} | {b for b in (4, 8, 16, 32, 64, 128, 256) if b < cin})
    choices: dict[str, tuple[Any, ...]] = {
        "oc_block": tuple(_pow2_upto(layer.cout, MAX_OC_BLOCK)),
        "tile_rows": tuple(range(1, min(layer.out_h, MAX_TILE_ROWS) + 1)),
        "tile_vecs": tuple(range(1, min(math.ceil(layer.out_w / min(vws)), MAX_TILE_VECS) + 1)),
        "ic_block": tuple(icb),
        "unroll": UNROLLS,
        "loop_order": LOOP_ORDERS,
        "threads": tuple(range(1, target.max_threads + 1)),
        "thread_mapping": THREAD_MAPPINGS,
        "vector_width": vws,
        "fkr": (True, False),
        "lre": (True, False),
        "format": FORMATS,
        "shifted": (False, True),
        "prefetch": PREFETCHES,
        "tap_shuffle": (False, True),
        "out_prefetch": (False, True),
        "shift_sums": (False, True),
        "pack_rows": (False, True) if any(pack_factor(layer, v) > 1 for v in vws) else (False,),
    }
    if layer.cin > 65535:
        raise ConfigError(f"layer {layer.name!r}: cin must be <= 65535 for FKW; got {layer.cin}")
    for key, value in fixed.items():
        if key not in choices:
            raise ConfigError(
                f"config_space got unknown field {key!r}; fields are {', '.join(choices)}"
            )
        wanted = value if isinstance(value, tuple | list) else (value,)
        bad = [v for v in wanted if v not in choices[key]]
        if bad or not wanted:
            raise ConfigError(
                f"KernelConfig.{key} must be one of {_fmt(choices[key])} for layer "
                f"{layer.name!r} on target {target.name!r}; got {bad[0] if bad else wanted!r}"
            )
        choices[key] = tuple(wanted)
    if choices["format"] == ("csr",):
        choices["lre"] = (False,)
        for key in ("tap_shuffle", "shift_sums"):
            if key not in fixed:
                choices[key] = (False,)
    if "threads" in fixed and choices["threads"] == (1,) and "thread_mapping" not in fixed:
        # One thread runs every filter group in order whatever the mapping (the generated
        # code is identical), so a pinned single thread searches one mapping, not three:
        # the one default() picks, so the default config does not change.
        choices["thread_mapping"] = ("balanced",)
    if min_accumulators < 1:
        raise ConfigError(f"min_accumulators must be >= 1; got {min_accumulators}")
    return ConfigSpace(layer=layer, target=target, choices=choices,
                       min_accumulators=min_accumulators)
