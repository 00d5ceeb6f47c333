"""The joint search space: space files, candidates, and sampling through Optuna."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest

from pattune_common import UserInputError
from search_spaces import PatternSet, all_patterns
from search_spaces.space import Candidate, JointSpace

LAYERS = ["features.0", "features.3", "features.7"]


def _natural(k: int) -> PatternSet:
    return PatternSet(all_patterns()[:k])


def test_example_space_file_is_the_default() -> None:
    assert JointSpace.from_toml(Path(__file__).parents[1] / "examples/space.toml") == JointSpace()


def test_suggest_builds_candidates_with_stable_hashes() -> None:
    space = JointSpace.from_dict(
        {"patterns": {"k": [4, 8]}, "connectivity": {"layers": {"features.0": ["1x"]}}}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(20):
        trial = study.ask()
        cand = space.suggest(trial, LAYERS, _natural)
        assert cand.k in (4, 8)
        assert cand.rate_of("features.0") == "1x"
        assert cand.rate_of("features.7") in ("1x", "2x", "3.6x", "5x")
        assert Candidate.from_json(cand.to_json()).stable_hash() == cand.stable_hash()
        seen.append(cand.stable_hash())
        study.tell(trial, 1.0)
    assert len(set(seen)) > 5


def test_shared_rate_mode() -> None:
    space = JointSpace.from_dict({"connectivity": {"per_layer": False, "rates": ["2x", "3.6x"]}})
    trial = optuna.create_study().ask()
    cand = space.suggest(trial, LAYERS, _natural)
    assert len({r for _, r in cand.rates}) == 1


def test_explicit_pattern_sets() -> None:
    space = JointSpace.from_dict(
        {"patterns": {"sets": [["010111000", "000111010"], ["110110000"]]}}
    )
    trial = optuna.create_study().ask()
    cand = space.suggest(trial, LAYERS, _natural)
    assert cand.k in (1, 2)
    assert str(space.pattern_sets[1][0]) == "X X .\nX X .\n. . ."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[patterns\nk=1", "is not valid TOML"),
        ("[connectivity]\nrates = ['0.5x']", "ratio >= 1"),
        ("[patterns]\nk = [200]", "K must lie in 1..126; got 200"),
        ("[bogus]\nx=1", "unknown sections ['bogus']"),
        ("[patterns]\nsets = [['01011']]", "a pattern is k*k '0'/'1' characters"),
        ("[kernel]\nbudget = 0", "budget and candidates_per_measure must be >= 1"),
    ],
)
def test_bad_space_files(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "space.toml"
    f.write_text(text)
    with pytest.raises(UserInputError, match=re.escape(message)) as e:
        JointSpace.from_toml(f)
    assert str(f) in str(e.value)


def test_missing_space_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        JointSpace.from_toml(tmp_path / "nope.toml")
