"""The weights file: written and read back, and every bad file refused with a code and a
message, never a crash: by the Python reader and by the C library (in-process and under qemu)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from codegen import aarch64_target, host_target
from codegen.network import (
    NetworkBuild,
    NetworkLibrary,
    WeightsError,
    WeightsStatus,
    decode_weights,
    encode_weights,
    read_weights,
    run_network_executable,
)
from tests.network_support import build, model_case

# One worker builds this module's networks once (scripts/test.sh runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("network-weights")

SECTIONS = (b"\x01" * 5, b"", b"\x02" * 64, b"\x03" * 100)


def test_round_trip_and_alignment() -> None:
    data = encode_weights(SECTIONS, 0x1234)
    wf = decode_weights(data, fingerprint=0x1234, section_bytes=[5, 0, 64, 100])
    assert wf.sections == SECTIONS and wf.fingerprint == 0x1234
    payload = struct.unpack_from("<Q", data, 32)[0]
    offsets = [struct.unpack_from("<Q", data, 64 + 16 * i)[0] for i in range(len(SECTIONS))]
    assert payload % 64 == 0 and all(o % 64 == 0 for o in offsets)
    assert zlib.crc32(data[payload:]) == struct.unpack_from("<I", data, 48)[0]


def _corrupt(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x40
    return bytes(b)


def _version(data: bytes, v: int) -> bytes:
    return data[:8] + struct.pack("<I", v) + data[12:]


# name -> (how to spoil a good file, the status it must get, words of the message)
BAD: dict[str, tuple[Callable[[bytes], bytes], WeightsStatus, str]] = {
    "empty": (lambda d: b"", WeightsStatus.TRUNCATED, "truncated"),
    "header_only": (lambda d: d[:40], WeightsStatus.TRUNCATED, "truncated"),
    "truncated": (lambda d: d[:-1], WeightsStatus.TRUNCATED, "truncated"),
    "wrong_magic": (lambda d: b"PTNETWTX" + d[8:], WeightsStatus.MAGIC, "bad magic"),
    "a_png": (lambda d: b"\x89PNG\r\n\x1a\n" + bytes(100), WeightsStatus.MAGIC, "bad magic"),
    "wrong_version": (lambda d: _version(d, 2), WeightsStatus.VERSION, "version 2"),
    "corrupted_payload": (lambda d: _corrupt(d, len(d) - 3), WeightsStatus.CHECKSUM,
                          "payload checksum"),
    "corrupted_table": (lambda d: _corrupt(d, 70), WeightsStatus.CHECKSUM, "header checksum"),
    "trailing": (lambda d: d + b"\0", WeightsStatus.FORMAT, "past its payload"),
    "other_network": (lambda d: encode_weights(SECTIONS, 0x999), WeightsStatus.NETWORK,
                      "another network"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_python_reader_refuses(name: str) -> None:
    spoil, code, words = BAD[name]
    data = spoil(encode_weights(SECTIONS, 0x1234))
    with pytest.raises(WeightsError, match=words) as exc:
        decode_weights(data, fingerprint=0x1234, section_bytes=[5, 0, 64, 100])
    assert exc.value.code is code


def test_missing_file_is_an_io_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="cannot read weights file") as exc:
        read_weights(tmp_path / "nope.bin")
    assert exc.value.code is WeightsStatus.IO


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[nn.Module, NetworkBuild]]:
    root = tmp_path_factory.mktemp("weights")
    model, shape = model_case("example")
    out = {}
    for target in (host_target(), aarch64_target()):
        products = ("shared",) if target.can_load_library else ("run_model",)
        out[target.name] = (model, build(model, shape, None, target, root / target.name,
                                         root / "cache", products=products))
    return out


def _spoilt(b: NetworkBuild, name: str, tmp_path: Path) -> Path:
    good = Path(b.weights).read_bytes()
    if name == "other_network":
        bad = encode_weights(decode_weights(good).sections, 0x999)
    else:
        bad = BAD[name][0](good)
    path = tmp_path / f"{name}.bin"
    path.write_bytes(bad)
    return path


@pytest.mark.parametrize("name", sorted(BAD))
def test_c_library_refuses_with_the_same_code_and_message(builds: dict, name: str,
                                                           tmp_path: Path) -> None:
    _, b = builds["host"]
    path = _spoilt(b, name, tmp_path)
    code, words = BAD[name][1], BAD[name][2]
    python_msg = ""
    try:
        decode_weights(path.read_bytes(), fingerprint=int(b.fingerprint, 16))
    except WeightsError as exc:
        python_msg = str(exc)
    for source in (path, path.read_bytes()):  # create_from_file, create_from_memory
        with pytest.raises(WeightsError, match=words) as exc:
            NetworkLibrary(b.shared_library, source)
        assert exc.value.code is code
        assert str(exc.value).endswith(python_msg)


def test_c_library_reports_a_missing_file(builds: dict, tmp_path: Path) -> None:
    _, b = builds["host"]
    with pytest.raises(WeightsError, match="cannot open weights file .*nope.bin") as exc:
        NetworkLibrary(b.shared_library, tmp_path / "nope.bin")
    assert exc.value.code is WeightsStatus.IO


@pytest.mark.parametrize("name", ["truncated", "wrong_version", "corrupted_payload",
                                  "wrong_magic"])
def test_run_model_refuses_bad_weights_under_qemu(builds: dict, name: str,
                                                  tmp_path: Path) -> None:
    _, b = builds["aarch64"]
    path = _spoilt(b, name, tmp_path)
    x = np.zeros(b.input_shape, np.float32)
    res = run_network_executable(b.run_model, path, x, b.output_shape, aarch64_target())
    code = int(BAD[name][1])
    assert res.error.startswith("run: exit code 3"), res.error
    assert BAD[name][2] in res.error and f"(code {code})" in res.error
