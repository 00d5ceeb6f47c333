"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, read with numpy.

The package installs the four gzipped idx files under
``/usr/share/datasets/fashion-mnist`` (``dpkg -L dataset-fashion-mnist``). A
different directory holding the same four files can be given as ``data_dir`` or,
as a documented fallback, the ``PATTUNE_FASHION_MNIST_DIR`` environment variable.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pattune_common import UserInputError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DIR = "PATTUNE_FASHION_MNIST_DIR"
APT_PACKAGE = "dataset-fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Training-set pixel statistics (of x / 255), used to normalise every split.
MEAN, STD = 0.2860, 0.3530


class DatasetError(UserInputError):
    """The dataset files are missing or unreadable."""


@dataclass(frozen=True)
class Split:
    """One split as normalised tensors.

    Attributes:
        images: float32 (N, 1, 28, 28), normalised with the training mean/std.
        labels: int64 (N,), class ids 0..9.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int, *, seed: int = 0) -> Split:
        """``n`` examples drawn without replacement by a seeded generator (all if n >= len)."""
        if n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n]
        return Split(self.images[idx], self.labels[idx])


def data_dir(explicit: str | Path | None = None) -> Path:
    """The directory to read: ``explicit``, else ``$PATTUNE_FASHION_MNIST_DIR``, else Debian's."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else DEFAULT_DIR


def _read_idx(path: Path, *, magic: int, ndim: int) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read Fashion-MNIST file {path}: {exc}") from None
    header = np.frombuffer(raw[: 4 * (1 + ndim)], dtype=">u4")
    if len(header) != 1 + ndim or int(header[0]) != magic:
        raise DatasetError(f"{path} is not an idx file (bad magic number)")
    shape = tuple(int(v) for v in header[1:])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated: {data.size} bytes for shape {shape}")
    return data.reshape(shape)


def load_raw(split: str, *, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one split's uint8 images (N, 28, 28) and uint8 labels (N,).

    Raises:
        ValueError: ``split`` is not ``train`` or ``test``.
        DatasetError: A file is missing (the message names the apt package) or corrupt.
    """
    if split not in FILES:
        raise ValueError(f"split must be one of train, test; got {split!r}")
    d = data_dir(root)
    paths = [d / f for f in FILES[split]]
    for p in paths:
        if not p.is_file():
            raise DatasetError(
                f"Fashion-MNIST file {p.name} not found in {d}; install it with "
                f"'apt-get install {APT_PACKAGE}' or set {ENV_DIR} to a directory holding it"
            )
    images = _read_idx(paths[0], magic=2051, ndim=3)
    labels = _read_idx(paths[1], magic=2049, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{d}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def load_split(split: str, *, root: str | Path | None = None) -> Split:
    """Read one split as normalised tensors (see :class:`Split`)."""
    images, labels = load_raw(split, root=root)
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = ((x - MEAN) / STD).unsqueeze(1).contiguous()
    return Split(images=x, labels=torch.from_numpy(labels.astype(np.int64)))
