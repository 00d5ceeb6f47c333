"""The outer study: modes, constraints, resume, and re-queueing a dead worker's trial.

The evaluation here is a closed-form function of the candidate: these tests are
about the study's bookkeeping, not about kernels or devices.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autotune.records import RecordsDB
from autotune.study import OuterStudy, TrialOutcome
from search_spaces import PatternSet, all_patterns, parse_connectivity
from search_spaces.space import Candidate, JointSpace

LAYERS = ["c1", "c2", "c3"]


def natural(k: int) -> PatternSet:
    return PatternSet(all_patterns()[:k])


def outcome(c: Candidate, _n: int) -> TrialOutcome:
    kept = [1 - parse_connectivity(r) for _, r in c.rates]
    latency = sum(kept) * 10 + c.k * 0.1
    accuracy = 0.95 - 0.02 * sum(1 - k for k in kept) - 0.002 * (12 - c.k)
    return TrialOutcome(latency_ms=latency, accuracy=accuracy, attrs={"k": c.k})


def make(url: str, name: str = "s", **kw) -> OuterStudy:  # type: ignore[no-untyped-def]
    return OuterStudy(
        storage=url,
        study_name=name,
        space=JointSpace(),
        layers=LAYERS,
        select_natural=natural,
        records=RecordsDB(url),
        **kw,
    )


def test_pareto_and_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    s = make(url)
    assert s.run(outcome, n_trials=6) == 6
    # A rerun of the same command with a larger N continues, never restarts.
    again = make(url)
    assert again.run(outcome, n_trials=10) == 4
    assert again.finished_trials() == 10
    front = again.best_trials()
    assert front and all(t.values[1] <= 0.95 for t in front)


def test_latency_mode_respects_accuracy_constraint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    s = make(url, objective="latency", max_accuracy_drop=0.01, dense_accuracy=0.95)
    s.run(outcome, n_trials=12)
    best = s.best_trials()
    for t in s.study.get_trials(states=(TrialState.COMPLETE,)):
        if t in best:
            assert 0.95 - t.user_attrs["pattune:accuracy"] <= 0.01 + 1e-12


def test_objective_mismatch_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    make(url).run(outcome, n_trials=1)
    with pytest.raises(ValueError, match="created with objective 'pareto'; use --objective pareto"):
        make(url, objective="latency")


def test_failing_candidate_is_a_failed_trial(tmp_path: Path) -> None:
    def boom(c: Candidate, n: int) -> TrialOutcome:
        if n == 1:
            raise RuntimeError("build: gcc: error: x")
        return outcome(c, n)

    s = make(f"sqlite:///{tmp_path / 'f.db'}")
    s.run(boom, n_trials=3)
    states = [t.state for t in s.study.get_trials()]
    assert states.count(TrialState.FAIL) == 1
    failed = s.study.get_trials(states=(TrialState.FAIL,))[0]
    assert failed.user_attrs["pattune:error"] == "build: gcc: error: x"


def _hang(url: str, ready: str) -> None:
    s = make(url)
    s.records.heartbeat()

    def stuck(c: Candidate, n: int) -> TrialOutcome:
        Path(ready).write_text(str(n))
        signal.pause()
        raise AssertionError

    s.run(stuck, n_trials=5)


def test_trial_of_a_killed_worker_is_requeued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    make(url).run(outcome, n_trials=2)
    ready = tmp_path / "ready"
    p = mp.get_context("spawn").Process(target=_hang, args=(url, str(ready)))
    p.start()
    for _ in range(600):
        if ready.exists():
            break
        p.join(timeout=0.1)
    assert ready.exists()
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    s = make(url)
    running = s.study.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 1
    lost = running[0]
    assert s.requeue_dead() == [lost.number]
    s.run(outcome, n_trials=4)
    trials = s.study.get_trials()
    assert trials[lost.number].state == TrialState.FAIL
    redo = [t for t in trials if t.user_attrs.get("pattune:requeued_from") == lost.number]
    assert len(redo) == 1 and redo[0].params == lost.params
    assert redo[0].state == TrialState.COMPLETE


def test_ctrl_c_requeues_the_running_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"

    def interrupted(c: Candidate, n: int) -> TrialOutcome:
        if n == 1:
            raise KeyboardInterrupt
        return outcome(c, n)

    s = make(url)
    with pytest.raises(KeyboardInterrupt):
        s.run(interrupted, n_trials=3)
    s.run(outcome, n_trials=3)
    trials = s.study.get_trials()
    assert trials[2].user_attrs.get("pattune:requeued_from") == 1
    assert trials[2].params == trials[1].params
    assert optuna.trial.TrialState.COMPLETE == trials[2].state


def test_trials_failing_in_a_row_stop_the_run(tmp_path: Path) -> None:
    from autotune.study import TrialsFailing

    def broken(c: Candidate, n: int) -> TrialOutcome:
        raise RuntimeError("records: database went away")

    s = make(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(
        TrialsFailing,
        match="3 trials in a row failed; the last: RuntimeError: records: database went away",
    ):
        s.run(broken, n_trials=10)
    assert s.finished_trials() == 3
