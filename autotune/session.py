"""Everything one ``pattune tune`` / ``pattune export`` needs, built from user input once.

A :class:`TuneSession` resolves the model, its input shape, the accuracy
source, the device farm of the device type, the compile target, the records
database and the search space, and turns bad input into one-line
:class:`~pattune_common.UserInputError` s before any work starts.
"""

from __future__ import annotations

import logging
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autotune.accuracy import (
    AccuracySource,
    DataEstimate,
    EvaluatorEstimate,
    ProxyEstimate,
    WorkloadEstimate,
)
from autotune.records import RecordsDB
from codegen import LocalBuilder, Target, aarch64_target, get_target, host_target
from device_farm import Device, Farm, LeaseStore, LocalDevice, ProtocolConfig, load_inventory
from pattune_common import DEFAULT_STORAGE, ESTIMATE_SAMPLES, ConfigError, UserInputError
from pattune_common.files import check_output_dir
from pattune_common.storage import normalize_url
from search_spaces.data import load_split
from search_spaces.estimate import EstimateConfig
from search_spaces.example import trained_example
from search_spaces.loading import load_evaluator, load_model, parse_input_shape
from search_spaces.models import conv_layers
from search_spaces.patterns import PatternSet
from search_spaces.selection import select_pattern_set
from search_spaces.space import JointSpace
from search_spaces.workload import Workload, load_workload, split_workload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneOptions:
    """What the user asked for (the CLI's flags, the Python API's keywords).

    Attributes:
        model: ``example`` (default, trained on Fashion-MNIST and cached), a built-in
            name, ``package.module:factory`` or a TorchScript file.
        input_shape: ``"1,3,224,224"`` for user models.
        evaluate: ``package.module:function`` (model -> accuracy) or None.
        data: ``package.module:function`` () -> (train, validation) datasets or loaders.
        train: ``package.module:function`` (model, optimizer, criterion, epoch) -> None,
            one epoch of the user's training (NNI's trainer convention).
        estimate_epochs: Epochs of the user's training per accuracy estimate (with
            ``data`` or ``train``).
        device_type: ``local`` (default) or a type of the inventory.
        inventory: Inventory TOML for SSH devices.
        target: Compile target name or file; default from the device type's arch.
        storage: Optuna + records URL.
        study: Study name.
        space: Space file path, or None for the default space.
        strategy: Kernel search strategy name.
        estimate_samples: Fine-tune examples per accuracy estimate.
        eval_samples: Held-out examples per accuracy estimate.
        min_total_s: Measurement protocol: repeat until this much timed work.
        seed: Seed of every sampler and strategy.
        work_dir: Scratch directory (input files, device work dir for ``local``).
    """

    model: str = "example"
    input_shape: str | None = None
    evaluate: str | None = None
    data: str | None = None
    train: str | None = None
    estimate_epochs: int = 1
    device_type: str = "local"
    inventory: str | None = None
    target: str | None = None
    storage: str = DEFAULT_STORAGE
    study: str = "pattune"
    space: str | None = None
    strategy: str = "filtered"
    estimate_samples: int = ESTIMATE_SAMPLES
    eval_samples: int = 2000
    min_total_s: float = 0.02
    seed: int = 0
    work_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TuneSession:
    """Resolved model, accuracy source, farm, target, records and space."""

    def __init__(self, options: TuneOptions) -> None:
        self.options = options
        # Cheap checks of what the user gave first, the database last of them: bad input
        # must neither create a database nor wait for a model to load.
        self.space = JointSpace.from_toml(options.space) if options.space else JointSpace()
        if options.work_dir:
            check_output_dir(options.work_dir, "--work-dir")
        self.work_dir = Path(options.work_dir or tempfile.mkdtemp(prefix="pattune-"))
        self.devices = self._devices()
        self.target = self._target()
        normalize_url(options.storage)  # a URL that cannot be one fails before the model loads
        # What the export retrains with: the example's data, the user's hooks, or None.
        self.workload: Workload | None = None
        self.model, self.input_shape, self.accuracy = self._model()
        convs = conv_layers(self.model, self.input_shape)
        self.layers = [c for c in convs if c.is_3x3]
        if not self.layers:
            raise UserInputError(
                f"--model {options.model!r} has no 3x3 conv layer, so pattern pruning has "
                "nothing to tune; give a model with 3x3 convolutions"
            )
        # As in PatDNN, the first conv (reading the image) and depthwise convs keep all
        # their kernels unless the space file gives them rate choices.
        first = convs[0].name
        self.rate_layers = [
            c.name
            for c in self.layers
            if c.name in self.space.layer_rates or (c.name != first and not c.spec.is_depthwise)
        ]
        self._check_pins()
        unknown = set(self.space.layer_rates) - {c.name for c in self.layers}
        if unknown:
            raise UserInputError(
                f"the space file gives rates for {sorted(unknown)}, which are not 3x3 conv layers "
                f"of the model; they are {', '.join(c.name for c in self.layers)}"
            )
        self._natural: dict[int, PatternSet] = {}
        # Last: a database is created (or migrated) only for input that passed every check.
        self.records = RecordsDB(options.storage)

    def _check_pins(self) -> None:
        """Every [kernel] pin names a KernelConfig field and a layer of the model."""
        import dataclasses

        from codegen import KernelConfig

        fields = sorted(f.name for f in dataclasses.fields(KernelConfig))
        k = self.space.kernel
        for where, pins in [("[kernel] fixed", k.fixed),
                            *((f"[kernel.layers] {n!r}", p) for n, p in k.layers.items())]:
            unknown = sorted(set(pins) - set(fields))
            if unknown:
                raise UserInputError(
                    f"space file {self.options.space}: {where} pins unknown KernelConfig "
                    f"field(s) {', '.join(unknown)}; fields are {', '.join(fields)}")
        names = {c.name for c in self.layers}
        if set(k.layers) - names:
            raise UserInputError(
                f"space file {self.options.space}: [kernel.layers] names "
                f"{sorted(set(k.layers) - names)}, which are not 3x3 conv layers of the "
                f"model; they are {', '.join(sorted(names))}")

    # -- resolution ---------------------------------------------------------

    def _devices(self) -> list[Device]:
        o = self.options
        protocol = ProtocolConfig(min_total_s=o.min_total_s)
        if o.inventory is None:
            if o.device_type != "local":
                raise UserInputError(
                    f"device type {o.device_type!r} needs an inventory: pass --inventory FILE "
                    "(or use --device-type local)"
                )
            return [LocalDevice(work_dir=str(self.work_dir / "device"), protocol=protocol)]
        inv = load_inventory(o.inventory)
        if o.device_type == "local" and "local" not in inv.types():
            return [LocalDevice(work_dir=str(self.work_dir / "device"), protocol=protocol)]
        devices = inv.of_type(o.device_type, protocol)
        if not devices:
            raise UserInputError(
                f"no device of type {o.device_type!r} in {o.inventory}; its types are "
                f"{', '.join(inv.types()) or 'none'}"
            )
        return devices

    def _target(self) -> Target:
        if self.options.target:
            try:
                return get_target(self.options.target)
            except ConfigError as exc:
                raise UserInputError(str(exc)) from None
        arch = self.devices[0].arch or platform.machine()
        if arch == "aarch64":
            return aarch64_target()
        if arch == platform.machine():
            return host_target()
        raise UserInputError(
            f"no built-in compile target for arch {arch!r}; pass --target FILE.toml"
        )

    def _model(self) -> tuple[nn.Module, tuple[int, ...], AccuracySource]:
        o = self.options
        if o.model == "example":
            return self._example()
        model, shape = self._user_model()
        workload = load_workload(data=o.data, train=o.train, evaluate=o.evaluate, seed=o.seed)
        self.workload = workload
        if workload is not None:
            return model, shape, WorkloadEstimate(
                model=model, workload=workload, epochs=o.estimate_epochs
            )
        if o.evaluate:
            return (
                model,
                shape,
                EvaluatorEstimate(
                    model=model, input_shape=shape, evaluator=load_evaluator(o.evaluate)
                ),
            )
        return model, shape, ProxyEstimate(model=model, input_shape=shape, seed=o.seed)

    def _example(self) -> tuple[nn.Module, tuple[int, ...], AccuracySource]:
        """The bundled Fashion-MNIST example: estimates on a held-out subset; the
        export's retraining on all training data, judged on the whole test set."""
        o = self.options
        if o.data or o.train:
            raise UserInputError(
                "--data and --train are for your own --model; the example brings Fashion-MNIST"
            )
        train = load_split("train")
        test = load_split("test")
        ex = trained_example(train_split=train, test_split=test)
        held = test.subset(o.eval_samples, seed=o.seed)
        self.workload = split_workload(train, test, seed=o.seed)
        est = EstimateConfig(samples=o.estimate_samples, seed=o.seed)
        shape = (1, 1, 28, 28)
        return ex.model, shape, DataEstimate(
            model=ex.model, input_shape=shape, train=train, held_out=held, config=est
        )

    def _user_model(self) -> tuple[nn.Module, tuple[int, ...]]:
        o = self.options
        loaded = load_model(o.model)
        shape: tuple[int, ...] | None = loaded.input_shape
        if o.input_shape:
            shape = parse_input_shape(o.input_shape)
        if shape is None:
            raise UserInputError(
                f"--model {o.model!r} does not say its input size: pass --input-shape N,C,H,W"
            )
        if shape[0] != 1:
            # Tuning times kernels that compute one image (batch 1); a latency tuned
            # that way would be silently wrong for N images at once.
            raise UserInputError(
                f"--input-shape must have batch N = 1 (the generated kernels compute one "
                f"image at a time); got {','.join(map(str, shape))}"
            )
        model = loaded.model.eval()
        with torch.no_grad():
            try:
                model(torch.zeros(shape))
            except Exception as exc:  # noqa: BLE001 - user model
                raise UserInputError(
                    f"--model {o.model!r} fails on input shape {shape}: {type(exc).__name__}: {exc}"
                ) from None
        return model, shape

    # -- services -----------------------------------------------------------

    def natural_set(self, k: int) -> PatternSet:
        """The model's natural top-K pattern set (cached per K)."""
        if k not in self._natural:
            self._natural[k] = select_pattern_set(self.model, self.input_shape, k)
        return self._natural[k]

    def farm(self) -> Farm:
        """A farm over the device type's devices, leases in the records database."""
        return Farm(self.devices, leases=LeaseStore(self.records.url))

    def builder(self) -> LocalBuilder:
        """A parallel, cached builder."""
        return LocalBuilder()
