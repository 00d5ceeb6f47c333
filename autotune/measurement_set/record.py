"""Record a measurement set: measure every (or a random sample of) config of chosen layers.

Recording goes through :class:`autotune.measure.KernelMeasurer`, so every
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

from autotune.measure import KernelMeasurer
from autotune.measurement_set._format import Entry, LayerRecord, MeasurementSet, load, save
from autotune.records import RecordsDB
from codegen import KernelConfig, LocalBuilder, Target, config_space
from device_farm import Farm, LeaseStore, LocalDevice, MeasureJob, Measurement, ProtocolConfig
from pattune_common import UserInputError, stable_hash
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
}


@dataclass(frozen=True)
class RecordPlan:
    """What to record (keyword-only, validated by :func:`record`).

    Attributes:
        layers: The pruned layers, with their names unique.
        target: Compile target of the device type.
        pins: KernelConfig field -> allowed values (``codegen.config_space`` pins).
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
        "min_accumulators": plan.min_accumulators,
        "max_configs": plan.max_configs,
        "seed": plan.seed,
        "passes": plan.passes,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "complete": complete,
        "verified_against": "torch.nn.functional.conv2d (codegen.verify), checksum on device",
    }


def _order(plan: RecordPlan, layer: PrunedLayer) -> tuple[list[KernelConfig], dict[str, Any], int]:
    space = config_space(
        layer.spec, plan.target, min_accumulators=plan.min_accumulators, **plan.pins
    )
    configs = list(space.enumerate())
    rng = np.random.default_rng([plan.seed, int(layer.weights_hash[:8], 16)])
    order = [configs[int(i)] for i in rng.permutation(len(configs))]
    if plan.max_configs is not None:
        order = order[: plan.max_configs]
    desc = {
        "choices": {k: list(v) for k, v in space.choices.items()},
        "pins": {k: list(v) for k, v in plan.pins.items()},
        "min_accumulators": plan.min_accumulators,
    }
    return order, desc, len(configs)


class _CapturingRunner:
    """Passes jobs to a farm and keeps each Measurement by job id (raw times, cv)."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.seen: dict[str, Measurement] = {}

    def run(self, jobs: Sequence[MeasureJob]) -> list[Measurement]:
        out = self.farm.run(jobs)
        for j, m in zip(jobs, out, strict=True):
            self.seen[j.job_id] = m
        return out


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
        runner = _CapturingRunner(Farm(devs, leases=LeaseStore(db.url)))
        measurer = KernelMeasurer(
            records=db, device_type=plan.device_type, target=plan.target,
            builder=LocalBuilder(), runner=runner, work_dir=work / "inputs",
        )  # fmt: skip
        while _one_round(plan, mset, plans, layers, measurer, runner, p):
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
    measurer: KernelMeasurer,
    runner: _CapturingRunner,
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
            m = runner.seen.get(f"{layer.weights_hash}-{stable_hash(res.config.to_dict())}")
            new = (
                Entry(res.config, median_s=res.median_s, cv=m.cv if m else None,
                      times_s=tuple(m.times_s) if m else (), passes=pass_no)
                if res.median_s is not None
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
    (``features.7``) or, for VGG-16, conventional ones (``conv2_2``).

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
