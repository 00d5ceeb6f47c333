"""The joint search space: pattern count and set, per-layer connectivity, kernel configs.

A space is data, read from a documented TOML file (``examples/space.toml``)
or built with defaults; every sampled point becomes an immutable
:class:`Candidate` with a stable hash. The outer Optuna study samples K and the
per-layer rates; the per-layer kernel searches sample KernelConfigs within
codegen's valid ranges, optionally pinned here (``[kernel] fixed``).

Space file::

    [patterns]
    k = [4, 6, 8, 10, 12]        # choices for the number of patterns K
    # sets = [["010111000", ...]] # or explicit sets (rows of 3 '0'/'1' per pattern)

    [connectivity]
    rates = ["1x", "2x", "3.6x", "5x"]   # choices, either rate form
    per_layer = true                     # false: one rate for every layer

    [connectivity.layers]
    "features.0" = ["1x"]                # narrow (or widen) one layer's choices

    [kernel]
    budget = 6                           # configs measured per kernel-tuning task
    refine_budget = 16                   # ... for the tasks of trials on the Pareto front
    candidates_per_measure = 16          # cost-model-scored configs per measured one
    fixed = { threads = 1 }              # pin KernelConfig fields for every layer
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pattune_common import Record, UserInputError, stable_hash
from pattune_common.files import read_input
from search_spaces.encoding import PARAM_ENCODING, suggest_k, suggest_rate
from search_spaces.patterns import Pattern, PatternSet
from search_spaces.projection import parse_connectivity
from search_spaces.pruning import PruneConfig

#: K choices of the default space: evenly spaced, so K is an integer parameter.
DEFAULT_K = (4, 6, 8, 10, 12)
#: The keys each section of a space file may hold.
_SECTION_KEYS = {
    "patterns": {"k", "sets"},
    "connectivity": {"rates", "per_layer", "layers"},
    "kernel": {"budget", "refine_budget", "candidates_per_measure", "fixed", "layers"},
}
DEFAULT_RATES = ("1x", "2x", "3.6x", "5x")


@dataclass(frozen=True)
class Candidate(Record):
    """One point of the outer space: a pattern set and a connectivity rate per layer.

    Attributes:
        pattern_set: The K patterns every pruned layer uses.
        rates: ``(layer name, rate)`` pairs in model order; rates in either form
            accepted by :func:`~search_spaces.projection.parse_connectivity`.
    """

    pattern_set: PatternSet
    rates: tuple[tuple[str, str], ...]

    schema = "candidate"

    def __post_init__(self) -> None:
        rates = tuple((str(n), str(r)) for n, r in self.rates)
        for name, rate in rates:
            try:
                parse_connectivity(rate)
            except ValueError as exc:
                raise ValueError(f"layer {name!r}: {exc}") from None
        object.__setattr__(self, "rates", rates)

    @property
    def k(self) -> int:
        """Number of patterns."""
        return len(self.pattern_set)

    def rate_of(self, layer: str) -> str:
        """The rate of one layer (``"1x"`` for layers the candidate does not list)."""
        return dict(self.rates).get(layer, "1x")

    def prune_config(self) -> PruneConfig:
        """The pruning engine's config: this candidate's rate for each layer it lists.

        Layers it does not list keep every kernel (``connectivity=0``), so the
        model's first conv and depthwise convs stay whole unless the space gave
        them rate choices, as the study's layer list decides.
        """
        return PruneConfig(connectivity=0.0, layer_rates=dict(self.rates))

    def to_dict(self) -> dict[str, Any]:
        return {"pattern_set": self.pattern_set.to_dict(), "rates": [list(r) for r in self.rates]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(
            pattern_set=PatternSet.from_dict(data["pattern_set"]),
            rates=tuple((n, r) for n, r in data["rates"]),
        )

    def stable_hash(self) -> str:
        return stable_hash(self.to_dict())


def _pattern_from_rows(text: str, where: str) -> Pattern:
    bits = text.replace(" ", "").replace("/", "")
    side = int(round(len(bits) ** 0.5))
    if side * side != len(bits) or set(bits) - {"0", "1"}:
        raise UserInputError(f"{where}: a pattern is k*k '0'/'1' characters; got {text!r}")
    return Pattern(k=side, taps=tuple(i for i, b in enumerate(bits) if b == "1"))


@dataclass(frozen=True)
class KernelSpace:
    """How each layer's kernel configs are searched.

    Attributes:
        budget: Configs measured per kernel-tuning task.
        refine_budget: Configs measured per task of a trial that becomes the best
            exportable one (within the accuracy budget): tuning effort goes where
            the exported configuration will come from.
        candidates_per_measure: Configs the cost model scores per measured config.
        fixed: KernelConfig fields pinned for every layer (passed to ``config_space``).
        layers: Per-layer pins that override ``fixed``.
    """

    budget: int = 6
    refine_budget: int = 16
    candidates_per_measure: int = 16
    fixed: Mapping[str, Any] = field(default_factory=dict)
    layers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def fixed_for(self, layer: str) -> dict[str, Any]:
        """The pins that apply to one layer."""
        return {**self.fixed, **self.layers.get(layer, {})}


@dataclass(frozen=True)
class JointSpace:
    """The outer space (K, pattern sets, rates) and the kernel space.

    Attributes:
        k_choices: Choices for K (natural top-K sets of the model).
        pattern_sets: Explicit sets; when given, the study chooses among them
            instead of natural top-K sets.
        rates: Default per-layer rate choices.
        per_layer: One rate per layer (True) or one shared rate.
        layer_rates: Per-layer rate choices that replace ``rates``.
        kernel: The kernel-config search settings.
    """

    k_choices: tuple[int, ...] = DEFAULT_K
    pattern_sets: tuple[PatternSet, ...] = ()
    rates: tuple[str, ...] = DEFAULT_RATES
    per_layer: bool = True
    layer_rates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    kernel: KernelSpace = field(default_factory=KernelSpace)

    def __post_init__(self) -> None:
        if not self.k_choices and not self.pattern_sets:
            raise ValueError("the space needs K choices or explicit pattern sets")
        for k in self.k_choices:
            if not 1 <= k <= 126:
                raise ValueError(f"K must lie in 1..126; got {k}")
        for name, choices in [("rates", self.rates), *self.layer_rates.items()]:
            if not choices:
                raise ValueError(f"{name}: rate choices must not be empty")
            for r in choices:
                parse_connectivity(r)
        if self.kernel.budget < 1 or self.kernel.candidates_per_measure < 1:
            raise ValueError("kernel budget and candidates_per_measure must be >= 1")
        if self.kernel.refine_budget < self.kernel.budget:
            raise ValueError("kernel refine_budget must be >= budget")

    def rate_choices(self, layer: str) -> tuple[str, ...]:
        """The rate choices of one layer."""
        return tuple(self.layer_rates.get(layer, self.rates))

    def suggest(
        self,
        trial: Any,
        layers: Sequence[str],
        select_natural: Callable[[int], PatternSet],
        *,
        encoding: int = PARAM_ENCODING,
    ) -> Candidate:
        """Ask an Optuna trial for one Candidate.

        Args:
            trial: ``optuna.Trial`` (``suggest_categorical``, ``suggest_int``).
            layers: Names of the layers that take patterns, in model order.
            select_natural: K -> the model's natural top-K pattern set.
            encoding: How the point is written as parameters
                (:mod:`search_spaces.encoding`): the study's, 2 for a new one.
        """
        if self.pattern_sets:
            idx = trial.suggest_categorical("pattern_set", list(range(len(self.pattern_sets))))
            ps = self.pattern_sets[idx]
        else:
            ps = select_natural(suggest_k(trial, self.k_choices, encoding))
        if self.per_layer:
            rates = [(n, suggest_rate(trial, f"rate:{n}", self.rate_choices(n), encoding))
                     for n in layers]
        else:
            shared = suggest_rate(trial, "rate", self.rates, encoding)
            rates = [
                (n, shared if shared in self.rate_choices(n) else self.rate_choices(n)[0])
                for n in layers
            ]
        return Candidate(pattern_set=ps, rates=tuple(rates))

    @classmethod
    def from_toml(cls, path: str | Path) -> JointSpace:
        """Read a space file; any problem is a UserInputError naming the file and key."""
        p = Path(path)
        try:
            data = tomllib.loads(read_input(p, "space file", max_bytes=16 << 20).decode())
        except FileNotFoundError:
            raise UserInputError(f"space file {p} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserInputError(f"space file {p} is not valid TOML: {exc}") from None
        except OSError as exc:  # a directory, unreadable
            raise UserInputError(f"space file {p} cannot be read: {exc.strerror or exc}") from None
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # AttributeError: a key that must be a table is a string or a list;
            # OverflowError: int() of an infinite number (budget = inf)
            raise UserInputError(f"space file {p}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JointSpace:
        """Build from the TOML structure documented in the module docstring.

        Unknown sections and keys are refused with the allowed ones listed: a typo
        (``budgte = 3``) must not run a night with the default.
        """
        known = {"patterns", "connectivity", "kernel"}
        if set(data) - known:
            raise ValueError(
                f"unknown sections {sorted(set(data) - known)}; known: {sorted(known)}"
            )
        pat = data.get("patterns", {})
        con = data.get("connectivity", {})
        ker = data.get("kernel", {})
        for section, value in (("patterns", pat), ("connectivity", con), ("kernel", ker)):
            if not isinstance(value, dict):
                raise ValueError(f"[{section}] must be a table; got {value!r}")
            unknown = sorted(set(value) - _SECTION_KEYS[section])
            if unknown:
                raise ValueError(
                    f"unknown key{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(f'[{section}] {k}' for k in unknown)}; [{section}] allows "
                    f"{', '.join(sorted(_SECTION_KEYS[section]))}"
                )
        sets = tuple(
            PatternSet(tuple(_pattern_from_rows(t, "patterns.sets") for t in s))
            for s in pat.get("sets", [])
        )
        kernel = KernelSpace(
            budget=int(ker.get("budget", 6)),
            refine_budget=int(ker.get("refine_budget", max(16, int(ker.get("budget", 6))))),
            candidates_per_measure=int(ker.get("candidates_per_measure", 16)),
            fixed=dict(ker.get("fixed", {})),
            layers={k: dict(v) for k, v in ker.get("layers", {}).items()},
        )
        return cls(
            k_choices=tuple(int(k) for k in pat.get("k", () if sets else DEFAULT_K)),
            pattern_sets=sets,
            rates=tuple(str(r) for r in con.get("rates", DEFAULT_RATES)),
            per_layer=bool(con.get("per_layer", True)),
            layer_rates={k: tuple(str(r) for r in v) for k, v in con.get("layers", {}).items()},
            kernel=kernel,
        )
