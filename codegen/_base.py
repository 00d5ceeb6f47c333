"""The Builder interface: generated kernels in, build products (or errors) out.

Contract (TVM MetaSchedule's ``Builder.build``): :meth:`Builder.build` takes a
list of :class:`BuildInput` and returns a list of :class:`BuildResult` of the
same length and order. A failing compile is a result whose ``error`` starts
with ``"build:"`` and carries the compiler's first error line; ``build`` never
raises for a bad candidate (only for misuse). Implementations may build in
parallel; results are cached by content, so building twice is free.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

from codegen.generator import GeneratedKernel
from codegen.target import Target
from pattune_common import Record


class Product(str, enum.Enum):
    """What to build from a kernel's source."""

    EXECUTABLE = "exe"
    LIBRARY = "lib"


@dataclass(frozen=True)
class BuildInput:
    """One kernel to build for one target.

    Attributes:
        kernel: The generated source and weights.
        target: Compiler and flags.
        products: Which products to build.
    """

    kernel: GeneratedKernel
    target: Target
    products: tuple[Product, ...] = (Product.EXECUTABLE, Product.LIBRARY)


@dataclass(frozen=True)
class BuildResult(Record):
    """Paths of the built products, or an error; never both.

    Attributes:
        name: The kernel's name.
        executable: Path of the standalone executable ("" when not built).
        library: Path of the shared library ("" when not built).
        weights: Path of the weights blob file next to the products.
        source: Path of the C source.
        key: Content hash the products are cached under.
        seconds: Wall time spent compiling (0 on a cache hit).
        cached: True when every product came from the cache.
        error: ``"build: ..."`` on failure, else "".
    """

    name: str
    executable: str = ""
    library: str = ""
    weights: str = ""
    source: str = ""
    key: str = ""
    seconds: float = 0.0
    cached: bool = False
    error: str = ""

    schema = "build_result"

    def __post_init__(self) -> None:
        if self.error and (self.executable or self.library):
            raise ValueError("BuildResult holds either products or an error, never both")

    @property
    def ok(self) -> bool:
        """True when the build succeeded."""
        return not self.error


class Builder(abc.ABC):
    """Compiles generated kernels; batch in, batch out (see module docstring)."""

    @abc.abstractmethod
    def build(self, inputs: list[BuildInput]) -> list[BuildResult]:
        """Build every input; same order and length; failures as ``error`` results."""
