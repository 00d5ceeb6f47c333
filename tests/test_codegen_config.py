"""KernelConfig ranges come from the layer; invalid configs and targets are rejected clearly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from codegen import (
    KernelConfig,
    Target,
    aarch64_target,
    config_space,
    generate,
    get_target,
    host_target,
)
from pattune_common import ConfigError, stable_hash
from search_spaces.layers import LayerSpec
from tests.codegen_support import required_layers

SPEC = LayerSpec("conv", cin=20, cout=12, h=7, w=9)


def test_ranges_are_derived_from_layer_and_target() -> None:
    sp = config_space(SPEC, aarch64_target())
    assert sp.choices["tile_rows"] == (1, 2, 3, 4, 5, 6, 7)
    assert sp.choices["tile_vecs"] == (1, 2, 3)  # ceil(9 / 4)
    assert sp.choices["oc_block"] == (1, 2, 4, 8)
    assert sp.choices["ic_block"] == (4, 8, 16, 20)
    assert sp.choices["vector_width"] == (4,)
    assert sp.choices["threads"] == tuple(range(1, 9))


def test_sampled_and_enumerated_configs_are_valid_and_distinct() -> None:
    sp = config_space(SPEC, host_target(), threads=1, format="fkw", fkr=True)
    sample = sp.sample(np.random.default_rng(3), 40)
    assert len(sample) == 40
    assert len({c.to_json() for c in sample}) == 40
    assert all(sp.is_valid(c) for c in sample)
    assert sp.sample(np.random.default_rng(3), 40) == sample  # seeded, reproducible
    small = config_space(LayerSpec("s", cin=2, cout=1, h=1, w=1), aarch64_target(), threads=1,
                         format="csr")
    every = list(small.enumerate())
    # oc 1 x rows 1 x vecs 1 x ic 1 x unroll 3 x order 4 x map 1 (one thread) x vw 1
    # x fkr 2 x shifted 2 x prefetch 4 x out_prefetch 2, plus pack_rows (a 1-wide row and
    # its shared padding column are half a 4-float vector) with shifted and out_prefetch off
    assert len(every) == 3 * 4 * 1 * 2 * 2 * 4 * 2 + 3 * 4 * 1 * 2 * 4
    assert sum(c.pack_rows for c in every) == 3 * 4 * 1 * 2 * 4
    assert all(c.lre is False and c.format == "csr" for c in every)


def test_default_is_valid_everywhere() -> None:
    for t in (host_target(), host_target(isa="avx2"), aarch64_target()):
        for spec in (SPEC, LayerSpec("one", cin=1, cout=1, h=1, w=1)):
            cfg = config_space(spec, t).default()
            assert config_space(spec, t).validate(cfg) is cfg


def test_config_json_round_trip_and_hash() -> None:
    cfg = config_space(SPEC, host_target()).default()
    again = KernelConfig.from_json(cfg.to_json())
    assert again == cfg and again.stable_hash() == cfg.stable_hash()
    assert set(json.loads(cfg.to_json())) >= {"oc_block", "tile_rows", "tile_vecs", "ic_block",
                                              "unroll", "loop_order", "threads",
                                              "thread_mapping", "vector_width"}


def test_later_fields_at_their_default_leave_old_hashes_alone() -> None:
    cfg = config_space(SPEC, host_target()).default().replace(prefetch=0)
    assert "prefetch" not in cfg.to_dict()
    # What a record written before the later fields existed holds: none of them at its default.
    later = KernelConfig._added_later
    old_form = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in later or v != later[k]}
    assert cfg.stable_hash() == stable_hash(old_form)
    on = cfg.replace(prefetch=2)
    assert on.to_dict()["prefetch"] == 2 and on.stable_hash() != cfg.stable_hash()
    assert KernelConfig.from_json(on.to_json()) == on
    assert KernelConfig.from_dict(old_form) == cfg


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tile_rows": 9}, ("KernelConfig.tile_rows must be one of 1, 2, 3, 4, 5, 6, 7 for layer "
                           "'conv' on target 'aarch64'; got 9")),
        ({"thread_mapping": "rr"}, ("KernelConfig.thread_mapping must be one of 'contiguous', "
                                   "'interleaved', 'balanced' for layer 'conv' on target "
                                   "'aarch64'; got 'rr'")),
        ({"vector_width": 16}, ("KernelConfig.vector_width must be one of 4 for layer 'conv' on "
                               "target 'aarch64'; got 16")),
        ({"ic_block": 12}, ("KernelConfig.ic_block must be one of 4, 8, 16, 20 for layer 'conv' on "
                           "target 'aarch64'; got 12")),
        ({"tile_rows": 7, "tile_vecs": 4}, "KernelConfig.tile_vecs must be one of 1, 2, 3"),
        ({"tile_rows": 7, "tile_vecs": 3, "ic_block": 20}, None),
        ({"format": "csr", "lre": True}, "KernelConfig.lre must be False when format is 'csr'"),
        ({"prefetch": 5}, ("KernelConfig.prefetch must be one of 0, 1, 2, 3 for layer 'conv' on "
                           "target 'aarch64'; got 5")),
        ({"shift_sums": True, "tile_vecs": 2}, (
            "KernelConfig.shift_sums for layer 'conv': the tile's 8 lanes (tile_vecs x "
            "vector_width) must hold out_w 9 plus the 2 shifted columns")),
        ({"shift_sums": True, "tile_vecs": 3, "tile_rows": 3}, (
            "KernelConfig.shift_sums for layer 'conv': 3 x tile_rows x tile_vecs accumulators "
            "must be <= 26; got 3 x 3 x 3")),
        ({"shift_sums": True, "tile_vecs": 3, "tile_rows": 2, "tap_shuffle": True}, (
            "KernelConfig.shift_sums for layer 'conv': it needs lre=True, shifted=False and "
            "tap_shuffle=False (aligned loads that LRE shares); got lre=True, shifted=False, "
            "tap_shuffle=True")),
        ({"shift_sums": True, "tile_vecs": 3, "tile_rows": 2}, None),
    ],
)
def test_invalid_configs_are_rejected_with_the_rule(change: dict, message: str | None) -> None:
    sp = config_space(SPEC, aarch64_target())
    cfg = sp.default().replace(**change)
    if message is None:
        sp.validate(cfg)
        return
    with pytest.raises(ConfigError) as err:
        sp.validate(cfg)
    assert str(err.value).startswith(message)


def test_register_budget_is_enforced() -> None:
    big = LayerSpec("big", cin=8, cout=8, h=32, w=128)
    sp = config_space(big, host_target(isa="avx2"))
    cfg = sp.default().replace(tile_rows=8, tile_vecs=2, vector_width=8)
    with pytest.raises(ConfigError, match=r"tile_rows x tile_vecs must be <= 10 accumulators on "
                                          r"target 'host' \(16 vector registers\); got 8 x 2"):
        sp.validate(cfg)


def test_pinning_unknown_or_out_of_range_fields_fails() -> None:
    with pytest.raises(ConfigError, match="unknown field 'tiles'"):
        config_space(SPEC, host_target(), tiles=3)
    with pytest.raises(ConfigError, match="KernelConfig.oc_block must be one of 1, 2, 4, 8"):
        config_space(SPEC, host_target(), oc_block=32)


def test_targets_are_data(tmp_path) -> None:
    toml = tmp_path / "phone.toml"
    toml.write_text(
        'name = "phone"\narch = "aarch64"\ncc = "aarch64-linux-gnu-gcc"\n'
        'cflags = ["-O2"]\nisa = "neon"\nvector_floats = 4\nvector_registers = 32\n'
        'run_prefix = ["qemu-aarch64"]\nstatic = true\n'
    )
    t = Target.load(toml)
    assert (t.name, t.vector_floats, t.run_prefix, t.static) == ("phone", 4, ("qemu-aarch64",), True)
    js = tmp_path / "phone.json"
    js.write_text(t.to_json())
    assert get_target(str(js)) == t
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\narch = "sparc"\ncc = "cc"\ncflags = []\nisa = "neon"\n'
                   "vector_floats = 4\n")
    with pytest.raises(ConfigError, match="Target.arch must be one of x86_64, aarch64"):
        Target.load(bad)
    with pytest.raises(ConfigError, match="unknown target 'mars'; use one of host, aarch64"):
        get_target("mars")


def test_host_target_matches_cpu() -> None:
    flags = Path("/proc/cpuinfo").read_text()
    t = host_target()
    assert t.isa == ("avx512" if " avx512f" in flags else "avx2")
    assert t.vector_floats == (16 if t.isa == "avx512" else 8)


def test_one_pinned_thread_searches_one_thread_mapping() -> None:
    one = config_space(SPEC, host_target(), threads=1)
    assert one.choices["thread_mapping"] == ("balanced",)
    assert one.default() == config_space(SPEC, host_target()).default().replace(threads=1)
    assert {c.thread_mapping for c in one.sample(np.random.default_rng(0), 40)} == {"balanced"}
    # An explicit pin wins, and more threads keep every mapping.
    assert config_space(SPEC, host_target(), threads=1,
                        thread_mapping="contiguous").choices["thread_mapping"] == ("contiguous",)
    assert len(config_space(SPEC, host_target(), threads=2).choices["thread_mapping"]) == 3
    # The generated code does not depend on the mapping at one thread (the header
    # comment names the config, so compare what follows it).
    layer = required_layers()["odd_width"]
    cfg = config_space(layer.spec, host_target(), threads=1).default()
    sources = {generate(layer, cfg.replace(thread_mapping=m), host_target()).source
               .split("*/", 1)[1] for m in ("contiguous", "interleaved", "balanced")}
    assert len(sources) == 1


def test_default_tile_spans_the_output_row_with_line_wide_vectors() -> None:
    # 16-float vectors (one 64-byte line): the whole row where 3 rows of it fit the 26
    # accumulators, with the most rows among those computing the fewest past the output;
    # 224-wide rows keep 2 vectors and the fewest such rows.
    expect = {224: (4, 2), 112: (3, 7), 56: (4, 4), 28: (7, 2), 14: (7, 1)}
    for hw, (rows, vecs) in expect.items():
        for stride in (1, 2):
            spec = LayerSpec("x", cin=64, cout=64, h=hw * stride, w=hw * stride,
                             stride=stride)
            cfg = config_space(spec, host_target(isa="avx512")).default()
            assert (cfg.vector_width, cfg.tile_rows, cfg.tile_vecs) == (16, rows, vecs), hw
    # Narrower vectors keep the 2-vector tile: the extra vector shares a line already read.
    for target, vw in ((host_target(isa="avx2"), 8), (aarch64_target(), 4)):
        cfg = config_space(LayerSpec("x", cin=64, cout=64, h=56, w=56), target).default()
        assert (cfg.vector_width, cfg.tile_rows, cfg.tile_vecs) == (vw, 4, 2)


def test_default_prefetches_for_the_pattern_kernel_only() -> None:
    strided = dataclasses.replace(SPEC, stride=2)
    for target in (host_target(isa="avx512"), host_target(isa="avx2"), aarch64_target()):
        assert config_space(SPEC, target).default().prefetch == 1
        assert config_space(SPEC, target, format="csr").default().prefetch == 0
        assert config_space(SPEC, target, format="dense").default().prefetch == 0
        # a stride-2 kernel is bound by its loads, which prefetches add to
        assert config_space(strided, target).default().prefetch == 0


def test_default_shuffles_taps_only_where_unaligned_loads_straddle_lines() -> None:
    # Rows start on a 64-byte line; a tap's load at column offset k of a vector starting at
    # x straddles one where x % 16 + k + width > 16.
    # Where the tile shifts its sums instead (shift_sums) it shuffles no taps.
    cases = {  # (output width, stride, target) -> (vector width, tap_shuffle, shift_sums)
        (7, 1, "avx512"): (16, False, True),    # two rows per vector (pack_rows)
        (7, 1, "avx2"): (8, False, False),      # 8 floats from columns 0-2 stay in the line
        (7, 2, "avx512"): (16, False, True),    # two rows per vector (pack_rows)
        (7, 2, "avx2"): (8, False, False),      # 7 outputs + 1 shifted column in 8 lanes
        (14, 1, "avx512"): (16, False, True),   # 14 + 2 in 16 lanes, 7 x 1 x 3 accumulators
        (14, 2, "avx512"): (16, False, True),
        (28, 1, "avx512"): (16, True, False),   # 7 x 2 x 3 accumulators do not fit
        (56, 1, "avx2"): (8, True, False),      # the second vector starts at column 8
        (7, 1, "aarch64"): (4, False, False),
        (56, 1, "aarch64"): (4, True, False),   # the vector at column 12, from column 13 or 14
    }
    targets = {"avx512": host_target(isa="avx512"), "avx2": host_target(isa="avx2"),
               "aarch64": aarch64_target()}
    for (ow, stride, isa), want in cases.items():
        spec = LayerSpec("x", cin=64, cout=64, h=ow * stride, w=ow * stride, stride=stride)
        cfg = config_space(spec, targets[isa]).default()
        assert (cfg.vector_width, cfg.tap_shuffle, cfg.shift_sums) == want, (ow, stride, isa)
        csr = config_space(spec, targets[isa], format="csr").default()
        assert not csr.tap_shuffle and not csr.shift_sums
