"""Record a measurement set: measure every (or a random sample of) config of chosen layers.

Recording goes through :class:`autotune.measurers.FarmMeasurer`, so every
recorded kernel is generated, built, verified against torch and measured on a
device of the type exactly as the tuner does it, with a private records
database. Layers are visited round-robin, a batch at a time, in a seeded random
order of their configs, and the file is rewritten after every batch: a
recording stopped early is a usable uniform random sample, and re-running the
same command resumes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotune.measurement_set._format import Entry, LayerRecord, MeasurementSet, load, save
from autotune.measurers import FarmMeasurer
from autotune.records import RecordsDB
from codegen import KernelConfig, LocalBuilder, Target, config_space
from device_farm import Farm, LeaseStore, LocalDevice, ProtocolConfig
from pattune_common import UserInputError
from search_spaces.layers import PrunedLayer, layer_stats

# VGG-16's conventional names for its 3x3 convs (torchvision numbering of ``features``).
VGG16_NAMES = {
    "conv1_1": "features.0", "conv1_2": "features.2", "conv2_1": "features.5",
    "conv2_2": "features.7", "conv3_1": "features.10", "conv3_2": "features.12",
    "conv3_3": "features.14", "conv4_1": "features.17", "conv4_2": "features.19",
    "conv4_3": "features.21", "conv5_1": "features.24", "conv5_2": "features.26",
    "conv5_3": "features.28",
}  # fmt: skip

# The benchmark-sized space of the shipped set (docs/search_benchmark.md): fields
# pinned to one value, or narrowed to a few, so 4 VGG-16 layers fit exhaustively.
BENCH_PINS: dict[str, tuple[Any, ...]] = {
    "threads": (1,),
    "thread_mapping": ("contiguous",),
    "vector_width": (16,),
    "format": ("fkw",),
    "fkr": (True,),
    "unroll": (1,),
    "oc_block": (2, 8, 32),
    "tile_rows": (1, 2, 4, 7),
    "tile_vecs": (1, 2),
    "ic_block": (8, 32, 128),
    "loop_order": ("block_group_tile", "group_block_tile", "block_group_filter"),
    "lre": (True, False),
    "shifted": (False,),
    "prefetch": (0,),
    "tap_shuffle": (False,),
    "out_prefetch": (False,),
    "shift_sums": (False,),
    "pack_rows": (False,),
}


@dataclass(frozen=True)
class RecordPlan:
    """What to record (keyword-only, validated by :func:`record`).

    Attributes:
        layers: The pruned layers, with their names unique.
        target: Compile target of the device type.
        pins: KernelConfig field -> allowed values (``codegen.config_space`` pins),
            as the user gave them: a value a layer does not allow is an error.
        preset: Pins of a preset (``BENCH_PINS``), fitted to each layer
            (:func:`fit_pins`): any model's layers get a benchmark-sized space.
            ``pins`` win over it.
        min_accumulators: ``codegen.config_space`` prior.
        max_configs: Most configs per layer (None = exhaustive; else a random sample).
        protocol: Measurement protocol of the device.
        batch: Configs per layer per round (one build batch).
        seed: Seed of the config order.
        pruning: What the layers are (pattern set, connectivity, weights), for metadata.
        device_type: Device type name recorded in the metadata.
        passes: Times every config is measured, each pass afresh (a new records
            database; builds come from the build cache); raw times are merged.
    """

    layers: Sequence[PrunedLayer]
    target: Target
    pins: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    preset: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    min_accumulators: int = 1
    max_configs: int | None = None
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    batch: int = 8
    seed: int = 0
    pruning: dict[str, Any] = field(default_factory=dict)
    device_type: str = "local"
    passes: int = 1


def _first_line(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    """This machine's CPU model (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _metadata(plan: RecordPlan, complete: bool) -> dict[str, Any]:
    return {
        "device": plan.device_type,
        "device_host": platform.node(),
        "cpu": cpu_name(),
        "compiler": _first_line([plan.target.cc, "--version"]),
        "flags": list(plan.target.cflags),
        "target": plan.target.to_dict(),
        "pruning": plan.pruning,
        "protocol": dataclasses.asdict(plan.protocol),
        "pins": {k: list(v) for k, v in plan.pins.items()},
        "preset": {k: list(v) for k, v in plan.preset.items()},
        "min_accumulators": plan.min_accumulators,
        "max_configs": plan.max_configs,
        "seed": plan.seed,
        "passes": plan.passes,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "complete": complete,
        "verified_against": "torch.nn.functional.conv2d (codegen.verify), checksum on device",
    }


def _nearest(allowed: tuple[Any, ...], wanted: Any) -> Any:
    return min(allowed, key=lambda a: (abs(a - wanted), a))


def fit_pins(preset: dict[str, tuple[Any, ...]],
             allowed: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    """A preset's pins made valid for one layer: the values the layer allows, in the
    preset's order; where it allows none of them, the allowed value nearest each one
    (numbers) or the first allowed (others). VGG-16's benchmark pins stay as they are
    for VGG-16; ResNet's 3-channel first conv gets ``ic_block = 3``, a NEON target
    ``vector_width = 4``."""
    out: dict[str, tuple[Any, ...]] = {}
    for key, wanted in preset.items():
        ok = allowed[key]
        kept = [v for v in wanted if v in ok]
        if not kept:
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool)
                          for v in (*wanted, *ok))
            kept = [_nearest(ok, w) for w in wanted] if numeric else [ok[0]]
        out[key] = tuple(dict.fromkeys(kept))
    return out


def _order(plan: RecordPlan, layer: PrunedLayer) -> tuple[list[KernelConfig], dict[str, Any], int]:
    pins = dict(plan.pins)
    if plan.preset:
        full = config_space(layer.spec, plan.target, min_accumulators=plan.min_accumulators)
        pins = {**fit_pins({k: v for k, v in plan.preset.items() if k not in plan.pins},
                           full.choices), **pins}
    space = config_space(
        layer.spec, plan.target, min_accumulators=plan.min_accumulators, **pins
    )
    configs = list(space.enumerate())
    rng = np.random.default_rng([plan.seed, int(layer.weights_hash[:8], 16)])
    order = [configs[int(i)] for i in rng.permutation(len(configs))]
    if plan.max_configs is not None:
        order = order[: plan.max_configs]
    desc = {
        "choices": {k: list(v) for k, v in space.choices.items()},
        "pins": {k: list(v) for k, v in pins.items()},
        "min_accumulators": plan.min_accumulators,
    }
    return order, desc, len(configs)


def record(
    plan: RecordPlan,
    out: str | Path,
    *,
    work_dir: str | Path | None = None,
    devices: Sequence[Any] | None = None,
    on_batch: Callable[[MeasurementSet], None] | None = None,
) -> MeasurementSet:
    """Measure the plan's configs and write the set to ``out`` after every batch.

    Args:
        plan: Layers, space, protocol.
        out: The measurement-set file (``.json.gz``); an existing set with the same
            layers is resumed (configs already in it are not measured again).
        work_dir: Scratch directory (records database, inputs, device dir).
        devices: Devices of one type to measure on (default: this machine's ``local``).
        on_batch: Called with the set after each saved batch (progress).

    Raises:
        UserInputError: Layer names repeat, or ``out`` holds a set of other layers.
    """
    names = [lay.spec.name for lay in plan.layers]
    if len(set(names)) != len(names) or not names:
        raise UserInputError(f"record needs distinct layers; got {', '.join(names) or 'none'}")
    work = Path(work_dir or tempfile.mkdtemp(prefix="pattune-record-"))
    work.mkdir(parents=True, exist_ok=True)
    plans = {lay.spec.name: _order(plan, lay) for lay in plan.layers}
    mset = _resume(plan, Path(out), plans)
    devs = list(devices or [LocalDevice(work_dir=str(work / "device"), protocol=plan.protocol)])
    layers = {lay.spec.name: lay for lay in plan.layers}
    for p in range(1, plan.passes + 1):
        # A fresh database per pass: the measurer never measures a config twice in one.
        db = RecordsDB(f"sqlite:///{work / f'records-pass{p}.db'}")
        measurer = FarmMeasurer(
            records=db, device_type=plan.device_type, target=plan.target,
            builder=LocalBuilder(), runner=Farm(devs, leases=LeaseStore(db.url)),
            work_dir=work / "inputs",
        )  # fmt: skip
        while _one_round(plan, mset, plans, layers, measurer, p):
            mset.metadata = _metadata(plan, False)
            save(mset, out)
            if on_batch:
                on_batch(mset)
    mset.metadata = _metadata(plan, _complete(mset, plans, plan.passes))
    save(mset, out)
    return mset


def _one_round(
    plan: RecordPlan,
    mset: MeasurementSet,
    plans: dict[str, Any],
    layers: dict[str, PrunedLayer],
    measurer: FarmMeasurer,
    pass_no: int,
) -> bool:
    """Measure one batch of every layer in pass ``pass_no``; False when nothing was left."""
    progressed = False
    for rec in mset.layers:
        have = {e.config: i for i, e in enumerate(rec.entries)}
        todo = [
            c for c in plans[rec.name][0]
            if c not in have or (rec.entries[have[c]].passes < pass_no
                                 and rec.entries[have[c]].error is None)
        ][: plan.batch]  # fmt: skip
        if not todo:
            continue
        progressed = True
        layer = layers[rec.name]
        for res in measurer.measure(layer, todo):
            new = (
                Entry(res.config, median_s=res.latency_s, cv=res.cv, times_s=res.times_s,
                      passes=pass_no)
                if res.latency_s is not None
                else Entry(res.config, error=res.error or "record: skipped", passes=pass_no)
            )  # fmt: skip
            if res.config in have:
                rec.entries[have[res.config]] = _merge(rec.entries[have[res.config]], new)
            else:
                rec.entries.append(new)
        _finish_layer(rec, plans[rec.name])
    return progressed


def _merge(old: Entry, new: Entry) -> Entry:
    """One entry from two passes: raw times pooled; a pass that failed keeps the error."""
    if new.error is not None or old.median_s is None:
        return Entry(old.config, error=new.error or old.error, passes=new.passes)
    times = old.times_s + new.times_s
    arr = np.asarray(times, dtype=np.float64)
    cv = float(arr.std() / arr.mean()) if len(arr) > 1 and arr.mean() > 0 else None
    return Entry(old.config, median_s=float(np.median(arr)), cv=cv, times_s=times,
                 passes=new.passes)  # fmt: skip


def _finish_layer(rec: LayerRecord, plan: tuple[list[KernelConfig], dict[str, Any], int]) -> None:
    rec.coverage = "exhaustive" if len(rec.entries) >= plan[2] else "random"


def _complete(mset: MeasurementSet, plans: dict[str, Any], passes: int) -> bool:
    return all(
        len(r.entries) >= len(plans[r.name][0])
        and all(e.passes >= passes or e.error is not None for e in r.entries)
        for r in mset.layers
    )


def _resume(plan: RecordPlan, out: Path, plans: dict[str, Any]) -> MeasurementSet:
    fresh = [
        LayerRecord(
            name=lay.spec.name, spec=lay.spec.to_dict(), stats=layer_stats(lay),
            weights_hash=lay.weights_hash, space=plans[lay.spec.name][1],
            space_size=plans[lay.spec.name][2],
        )
        for lay in plan.layers
    ]  # fmt: skip
    if not out.exists():
        return MeasurementSet(metadata=_metadata(plan, False), layers=fresh)
    old = load(out)
    if [(r.name, r.weights_hash, r.space) for r in old.layers] != [
        (r.name, r.weights_hash, r.space) for r in fresh
    ]:
        raise UserInputError(
            f"{out} holds a measurement set of other layers or another space; "
            "give a new --out file to record these layers"
        )
    return old


#: The layers ``pattune record`` measures of VGG-16 by default (the shipped set's).
VGG16_DEFAULT = ("conv2_2", "conv3_2", "conv4_2", "conv5_2")


def distinct_layers(specs: Sequence[Any]) -> list[str]:
    """The first layer of each distinct shape (channels, size, stride, groups), in model
    order, leaving out layers that read the image (3 or fewer input channels): the
    layers whose kernels a benchmark of a model needs, each once."""
    seen: set[tuple[int, ...]] = set()
    out = []
    for s in specs:
        key = (s.cin, s.cout, s.h, s.w, s.stride, s.groups)
        if s.cin // s.groups <= 3 or key in seen:
            continue
        seen.add(key)
        out.append(s.name)
    return out


def model_layers(
    model_name: str,
    dataset: str,
    names: Sequence[str],
    *,
    k: int = 8,
    connectivity: str = "3.6x",
    seed: int = 0,
) -> tuple[list[PrunedLayer], dict[str, Any]]:
    """Prune the named 3x3 convs of a zoo model with its natural top-``k`` pattern set.

    The weights are the model's seeded initialisation (latency does not depend on
    trained values, only on the pruning structure). ``names`` are module names
    (``features.7``) or, for VGG-16, conventional ones (``conv2_2``); empty means
    :data:`VGG16_DEFAULT` for VGG-16 and, for any other model, the first 3x3 conv of
    each distinct shape past the image-reading one (:func:`distinct_layers`).

    Returns:
        The pruned layers and the pruning metadata.

    Raises:
        ValueError: Unknown layer name (the message lists the model's 3x3 convs).
    """
    from search_spaces.models import conv_layers, get_model, input_shape
    from search_spaces.projection import prune_layer
    from search_spaces.selection import select_pattern_set

    model = get_model(model_name, dataset, seed=seed)
    shape = input_shape(model_name, dataset)
    convs = {c.name: c for c in conv_layers(model, shape) if c.is_3x3}
    pset = select_pattern_set(model, shape, k)
    if not names:
        names = VGG16_DEFAULT if model_name == "vgg16" else distinct_layers(
            [c.spec for c in convs.values()])
    out = []
    for name in names:
        mod_name = VGG16_NAMES.get(name, name) if model_name == "vgg16" else name
        if mod_name not in convs:
            raise ValueError(f"layer must be one of {', '.join(convs)}; got {name!r}")
        c = convs[mod_name]
        w = c.module.weight.detach().cpu().numpy()
        b = c.module.bias.detach().cpu().numpy() if c.module.bias is not None else None
        out.append(prune_layer(c.spec, w, pset, connectivity=connectivity, bias=b))
    meta = {
        "model": model_name,
        "dataset": dataset,
        "weights": f"seeded initialisation (seed {seed})",
        "layers": {n: VGG16_NAMES.get(n, n) if model_name == "vgg16" else n for n in names},
        "patterns": k,
        "pattern_set": pset.to_dict(),
        "connectivity": connectivity,
    }
    return out, meta
