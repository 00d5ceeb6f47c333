"""The network weights file: one file, versioned, sectioned, checksummed.

Layout (little-endian)::

    offset  size  field
    0       8     magic "PTNETWTS"
    8       4     format version (1)
    12      4     header bytes (64)
    16      8     network fingerprint (Graph.fingerprint(): the library refuses another's)
    24      4     section count n
    28      4     CRC32 of the header (this field as 0) and the section table
    32      8     payload offset (64 + 16 n rounded up to 64)
    40      8     payload bytes
    48      4     CRC32 of the payload
    52      12    zero
    64      16 n  section table: per section, u64 offset (from the payload, a multiple
                  of 64) and u64 bytes
    ...           payload: the sections, each 64-byte aligned, zero filled between

CRC32 is zlib's (``zlib.crc32``). The C runtime (``pt_network_runtime.h``) checks the
same things in the same order as :func:`read_weights` and answers with the same codes.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pattune_common import PattuneError

MAGIC = b"PTNETWTS"
VERSION = 1
HEADER_BYTES = 64
_HEADER = struct.Struct("<8sIIQIIQQI12x")
_ENTRY = struct.Struct("<QQ")


class WeightsStatus(enum.IntEnum):
    """Status codes of ``pattune_model.h`` (``PT_OK``, ``PT_ERR_*``), shared with the C API."""

    OK = 0
    ARGUMENT = 1
    IO = 2
    TRUNCATED = 3
    MAGIC = 4
    VERSION = 5
    CHECKSUM = 6
    FORMAT = 7
    NETWORK = 8
    MEMORY = 9
    LAYER = 10

    def is_error(self) -> bool:
        """True for every code but ``OK``."""
        return self is not WeightsStatus.OK


class WeightsError(PattuneError):
    """A weights file the runtime refuses; ``code`` is the C API's status for it."""

    def __init__(self, code: WeightsStatus, message: str) -> None:
        super().__init__(message)
        self.code = code


def _align(n: int) -> int:
    return -(-n // 64) * 64


def encode_weights(sections: Sequence[bytes], fingerprint: int) -> bytes:
    """The weights file holding ``sections`` for the network of ``fingerprint``."""
    n = len(sections)
    payload_off = _align(HEADER_BYTES + _ENTRY.size * n)
    table, payload, pos = bytearray(), bytearray(), 0
    for s in sections:
        pos = _align(pos)
        payload += bytes(pos - len(payload)) + s
        table += _ENTRY.pack(pos, len(s))
        pos += len(s)
    payload_crc = zlib.crc32(payload)

    def header(crc: int) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, HEADER_BYTES, fingerprint, n, crc, payload_off,
                            len(payload), payload_crc)

    head_crc = zlib.crc32(bytes(table), zlib.crc32(header(0)))
    pad = bytes(payload_off - HEADER_BYTES - len(table))
    return header(head_crc) + bytes(table) + pad + bytes(payload)


def write_weights(path: str | Path, sections: Sequence[bytes], fingerprint: int) -> int:
    """Write :func:`encode_weights` to ``path``; return its size in bytes."""
    data = encode_weights(sections, fingerprint)
    Path(path).write_bytes(data)
    return len(data)


@dataclass(frozen=True)
class WeightsFile:
    """A checked weights file.

    Attributes:
        fingerprint: The network it belongs to.
        sections: The section payloads, in order.
    """

    fingerprint: int
    sections: tuple[bytes, ...]


def decode_weights(data: bytes, *, fingerprint: int | None = None,
                   section_bytes: Sequence[int] | None = None) -> WeightsFile:
    """Check ``data`` as the C runtime does and return its sections.

    Args:
        data: The file's bytes.
        fingerprint: The network it must belong to (None: any).
        section_bytes: The size each section must have (None: any).

    Raises:
        WeightsError: With the C API's code and message for the first problem found.
    """
    size = len(data)
    if size >= 8 and data[:8] != MAGIC:
        raise WeightsError(WeightsStatus.MAGIC, "not a pattune weights file (bad magic)")
    if size < HEADER_BYTES:
        raise WeightsError(WeightsStatus.TRUNCATED, f"weights file truncated: {size} bytes, "
                           f"the header alone is {HEADER_BYTES}")
    (_, version, hbytes, fp, n, head_crc, payload_off, payload_bytes,
     payload_crc) = _HEADER.unpack_from(data)
    if version != VERSION:
        raise WeightsError(WeightsStatus.VERSION, f"weights format version {version}; this "
                           f"runtime reads version {VERSION}: export the weights again")
    if hbytes != HEADER_BYTES or n > 1 << 20:
        raise WeightsError(WeightsStatus.FORMAT, "weights header is malformed")
    table_end = HEADER_BYTES + _ENTRY.size * n
    if size < table_end:
        raise WeightsError(WeightsStatus.TRUNCATED, f"weights file truncated: {size} bytes, "
                           f"its section table ends at {table_end}")
    head = bytearray(data[:HEADER_BYTES])
    head[28:32] = bytes(4)
    if zlib.crc32(data[HEADER_BYTES:table_end], zlib.crc32(bytes(head))) != head_crc:
        raise WeightsError(WeightsStatus.CHECKSUM, "weights header checksum mismatch: the file "
                           "is corrupted")
    if fingerprint is not None and fp != fingerprint:
        raise WeightsError(WeightsStatus.NETWORK, f"weights belong to another network "
                           f"(fingerprint {fp:016x}, this network is {fingerprint:016x})")
    if section_bytes is not None and n != len(section_bytes):
        raise WeightsError(WeightsStatus.NETWORK, f"weights have {n} sections, this network "
                           f"has {len(section_bytes)}")
    if payload_off != _align(table_end) or payload_bytes > size:
        raise WeightsError(WeightsStatus.FORMAT, "weights header is malformed")
    if size < payload_off + payload_bytes:
        raise WeightsError(WeightsStatus.TRUNCATED, f"weights file truncated: {size} bytes, "
                           f"expected {payload_off + payload_bytes}")
    if size > payload_off + payload_bytes:
        raise WeightsError(WeightsStatus.FORMAT, f"weights file has {size - payload_off - payload_bytes} "
                           "bytes past its payload")
    out = []
    for i in range(n):
        off, nb = _ENTRY.unpack_from(data, HEADER_BYTES + _ENTRY.size * i)
        if off % 64 or off > payload_bytes or nb > payload_bytes - off:
            raise WeightsError(WeightsStatus.FORMAT, f"weights section {i} lies outside the "
                               "payload")
        if section_bytes is not None and nb != section_bytes[i]:
            raise WeightsError(WeightsStatus.NETWORK, f"weights section {i} has {nb} bytes, this "
                               f"network needs {section_bytes[i]}")
        out.append(bytes(data[payload_off + off:payload_off + off + nb]))
    if zlib.crc32(data[payload_off:]) != payload_crc:
        raise WeightsError(WeightsStatus.CHECKSUM, "weights payload checksum mismatch: the file "
                           "is corrupted")
    return WeightsFile(fingerprint=fp, sections=tuple(out))


def read_weights(path: str | Path, **kwargs: object) -> WeightsFile:
    """:func:`decode_weights` of the file at ``path`` (same keyword arguments).

    Raises:
        WeightsError: ``IO`` when the file cannot be read, else as :func:`decode_weights`.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WeightsError(WeightsStatus.IO, f"cannot read weights file {str(path)!r}: "
                           f"{exc.strerror}") from None
    return decode_weights(data, **kwargs)  # type: ignore[arg-type]


__all__ = ["HEADER_BYTES", "MAGIC", "VERSION", "WeightsError", "WeightsFile", "WeightsStatus",
           "decode_weights", "encode_weights", "read_weights", "write_weights"]
