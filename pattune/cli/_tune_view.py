"""How ``pattune tune`` shows a run: a live table on a terminal, log lines anywhere else.

An overnight run under ``nohup``, in CI or into a log file has no terminal: there
the run writes one line when it starts (the study as found, so a resumed study
says where it stands and what its best is) and one line per finished trial
(number, candidate, latency, accuracy, the study's best, measurements, ETA),
each stamped with the UTC time. On a terminal the same figures are a live table.
``-q`` shows neither.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pattune.cli._common import QUIET, verbosity

if TYPE_CHECKING:
    from pattune import TuneProgress


def fmt_ms(value: float | None) -> str:
    """A latency in milliseconds, rounded to what a measurement can tell (4 digits)."""
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 1000 else f"{value:.4g}"


def fmt_acc(value: float | None) -> str:
    """An accuracy in [0, 1] to four decimals."""
    return "-" if value is None else f"{value:.4f}"


def fmt_eta(seconds: float | None) -> str:
    """``42 s``, ``14.2 min`` or ``3.1 h``."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def start_line(p: TuneProgress, study: str) -> str:
    """The study as found: new, or resumed with its finished trials and best."""
    if p.trials_finished == 0:
        return f"{_now()} study {study}: new, {p.trials} trials to run (dense accuracy " \
               f"{fmt_acc(p.dense_accuracy)})"
    return (f"{_now()} study {study}: resumed with {p.trials_finished}/{p.trials} trials "
            f"finished; best latency {fmt_ms(p.best_latency_ms)} ms, best accuracy "
            f"{fmt_acc(p.best_accuracy)} (dense {fmt_acc(p.dense_accuracy)})")


def trial_line(p: TuneProgress) -> str:
    """One finished trial: what it was, what it gave, the study's best, the run so far."""
    t = p.trial
    assert t is not None
    if t.state == "complete":
        got = f"latency {fmt_ms(t.latency_ms)} ms, accuracy {fmt_acc(t.accuracy)}"
    else:
        got = f"failed: {(t.error or 'no reason recorded').splitlines()[0][:200]}"
    return (f"{_now()} trial {t.number} {t.state}: {t.params_summary()} | {got} | study best "
            f"{fmt_ms(p.best_latency_ms)} ms, {fmt_acc(p.best_accuracy)} | measured "
            f"{p.configs_measured}, reused {p.configs_reused}, failed {p.configs_failed} | "
            f"{p.trials_finished}/{p.trials} trials, ETA {fmt_eta(p.eta_s)}")


def live_table(p: TuneProgress) -> Table:
    """The live table of a running tune."""
    table = Table.grid(padding=(0, 2))
    table.add_row("trials", f"{p.trials_finished}/{p.trials}", "ETA", fmt_eta(p.eta_s))
    table.add_row("configs measured", str(p.configs_measured), "reused", str(p.configs_reused))
    table.add_row(
        "filtered by cost model", str(p.configs_filtered), "failed", str(p.configs_failed)
    )
    table.add_row("best latency", f"{fmt_ms(p.best_latency_ms)} ms", "best accuracy",
                  f"{fmt_acc(p.best_accuracy)} (dense {fmt_acc(p.dense_accuracy)})")
    if p.trial is not None:
        table.add_row("last trial", f"{p.trial.number} {p.trial.state}", "candidate",
                      p.trial.params_summary())
    return table


class TuneScreen:
    """A spinner, then the live table (a terminal); a start line and trial lines (not one)."""

    def __init__(self, console: Console, what: str, study: str) -> None:
        self.console = console
        self.study = study
        self.shown = verbosity() > QUIET
        self.terminal = console.is_terminal
        self.status = console.status(what) if self.shown and self.terminal else None
        self.live: Live | None = None

    def __enter__(self) -> TuneScreen:
        if self.status is not None:
            self.status.start()
        return self

    def update(self, p: TuneProgress) -> None:
        if not self.shown:
            return
        if not self.terminal:
            if p.event == "start":
                self._line(start_line(p, self.study))
            elif p.event == "trial":
                self._line(trial_line(p))
            return
        if p.event == "start" and p.trials_finished:
            self.console.print(start_line(p, self.study), highlight=False)
        if self.live is None:  # the first snapshot: preparing is over
            if self.status is not None:
                self.status.stop()
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
        self.live.update(live_table(p))

    def _line(self, text: str) -> None:
        self.console.file.write(text + "\n")
        self.console.file.flush()  # a log line is worth nothing while it sits in a buffer

    def __exit__(self, *_exc: object) -> None:
        if self.status is not None:
            self.status.stop()
        if self.live is not None:
            self.live.stop()
