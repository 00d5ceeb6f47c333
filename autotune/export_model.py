"""The export's ``model/``: the whole pruned network as one library, verified, then timed.

:func:`check_network` runs before any retraining: a model with an op the network runtime
cannot run is refused at once, in one line naming the op and the module.
:func:`write_model` builds the retrained network with the tuned KernelConfigs for the
device type's target into a scratch folder, verifies it against the torch model
(``max |err| / max |ref| <= 1e-4``; a mismatch stops the export and nothing is written),
times it on a device of the type through the farm, does the same for the default
KernelConfigs at the same pruning (not shipped) and, where the device type is this
machine, times torch on the same model; then it moves the folder to ``model/`` and adds
the jobs file ``pattune measure`` takes and the ctypes loader::

    model/pattune_model.h       the C API (docs/network.md)
    model/*.c, *.h, Makefile    sources; ``make`` (``make CC=... CFLAGS=...``) builds
                                libpattune_model.a, libpattune_model.so and run_model
    model/libpattune_model.*    built for the target; run_model too
    model/weights.bin           the weights file (versioned, checksummed)
    model/model.json            shapes, ops, arena, per-layer configs and shapes
    model/input.bin             the seeded input the jobs file times
    model/measure_jobs.jsonl    ``pattune measure --jobs model/measure_jobs.jsonl ...``
    model/pattune_model.py      ``Model(folder).run(x)`` on numpy arrays (ctypes)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from autotune.network_latency import (
    NetworkLatency,
    NetworkTimer,
    PatternLayers,
    network_job,
    write_jobs_file,
)
from autotune.session import TuneSession
from autotune.untouched import UntouchedTime, torch_model_ms
from codegen.network import build_graph, reference_output
from codegen.network.loader import write_loader
from pattune_common import PattuneError

MODEL_DIR = "model"
JOBS_FILE = "measure_jobs.jsonl"


def check_network(session: TuneSession) -> None:
    """Refuse a model the network runtime cannot run (before any work).

    Raises:
        UnsupportedOpError: One line naming the op and the module.
        NetworkError: A model ``torch.fx`` cannot trace, or another refused setting.
    """
    build_graph(session.model.eval(), session.input_shape)


@dataclass(frozen=True)
class ModelExport:
    """What :func:`write_model` wrote and measured (milliseconds).

    Attributes:
        folder: ``model/``.
        tuned: The exported network (tuned configs) timed on the device type.
        default: The same pruning with default KernelConfigs, timed alike.
        torch: torch on this machine (the faster of eager and TorchScript-frozen, at the
            device's threads) where the device type is ``local``, else None.
        jobs_file: ``model/measure_jobs.jsonl``.
        loader: ``model/pattune_model.py``.
    """

    folder: Path
    tuned: NetworkLatency
    default: NetworkLatency
    torch: UntouchedTime | None
    jobs_file: Path
    loader: Path

    def to_config(self) -> dict[str, Any]:
        """The ``network`` section of config.json."""
        return {
            "folder": f"{MODEL_DIR}/",
            "end_to_end_ms": self.tuned.ms,
            "end_to_end_default_ms": self.default.ms,
            "torch_ms": None if self.torch is None else self.torch.ms,
            "torch_method": None if self.torch is None else self.torch.method,
            "threads": self.tuned.threads,
            "device": self.tuned.device,
            "arena_bytes": self.tuned.arena_bytes,
            "weights_bytes": self.tuned.weights_bytes,
            "max_rel_err": self.tuned.max_rel_err,
            "error": self.tuned.error or None,
            "default_error": self.default.error or None,
            "jobs_file": f"{MODEL_DIR}/{JOBS_FILE}",
        }


def write_model(session: TuneSession, model: nn.Module, layers: PatternLayers,
                out_dir: Path) -> ModelExport:
    """Build, verify and time the network; write ``out_dir/model`` (see the module docs).

    Args:
        session: The study's session (target, farm, work dir, device threads).
        model: The final pruned model (masks attached).
        layers: Per pattern conv, its final PrunedLayer and tuned KernelConfig.
        out_dir: The export folder.

    Raises:
        PattuneError: The network does not build or differs from torch.
    """
    model = model.eval()
    threads = session.devices[0].threads or 1
    timer = NetworkTimer(target=session.target, runner=session.farm(),
                         work_dir=session.work_dir / "export-network", threads=threads)
    stage = out_dir / f".{MODEL_DIR}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    build = timer.build(model, session.input_shape, layers, stage)
    tuned = timer.time(build, model, job_id="model")
    if tuned.error.startswith(("verify:", "run:", "network:")):
        shutil.rmtree(stage, ignore_errors=True)
        raise PattuneError(f"export: the whole network differs from torch: {tuned.error}")
    default = timer.measure(model, session.input_shape,
                            {name: (layer, None) for name, (layer, _) in layers.items()},
                            "default-configs")
    shutil.rmtree(timer.work_dir / "default-configs", ignore_errors=True)
    torch_time = None
    if session.options.device_type == "local":
        torch_time = torch_model_ms(model, session.input_shape, threads=threads)
    final = out_dir / MODEL_DIR
    shutil.rmtree(final, ignore_errors=True)
    stage.rename(final)
    moved = build.moved(final)
    x = np.fromfile(final / "input.bin", dtype="<f4").reshape(moved.input_shape)
    job = network_job("model", moved, final / "input.bin", reference_output(model, x),
                      threads=threads)
    jobs = write_jobs_file(final / JOBS_FILE, [job])
    return ModelExport(final, tuned, default, torch_time, jobs, write_loader(final))


__all__ = ["JOBS_FILE", "MODEL_DIR", "ModelExport", "check_network", "write_model"]
