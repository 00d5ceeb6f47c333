"""``pattune devices list|check|trust|clean``, ``pattune measure`` and ``pattune bench farm``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pattune.cli._app import app, bench_app, devices_app, fail
from pattune.cli._common import (
    QUIET,
    JsonOpt,
    JsonOutOpt,
    check_json_out,
    document,
    emit_json,
    err_console,
    out_console,
    print_table,
    verbosity,
)
from pattune.cli._options import DeviceTypeOpt, InventoryOpt, LeaseDbOpt

if TYPE_CHECKING:
    from rich.progress import TaskID

    from pattune import MeasureProgress, MeasureResult



@devices_app.command("list")
def devices_list(inventory: InventoryOpt = None, db: LeaseDbOpt = None, json_: JsonOpt = False,
                 json_out: JsonOutOpt = None) -> None:
    """List the devices of the inventory (plus the built-in local device).

    An SSH device's login is shown as OpenSSH resolves it (user, host, port, jump
    hosts, proxy command), from ``ssh -G`` where the client is installed.
    """
    from device_farm import LeaseStore, load_inventory
    from pattune_common.storage import require_existing

    check_json_out(json_out)
    inv = load_inventory(inventory)
    if db:
        require_existing(db, flag="--storage")  # listing reads; it must not create a database
    store = LeaseStore(db) if db else None
    docs: list[dict[str, Any]] = [{"name": "local", "type": "local", "arch": None, "user": None, "host": None,
             "port": None, "proxy_jump": [], "proxy_command": None, "work_dir": None,
             "build": "host", "threads": None, "cpu_affinity": []}]
    for d in inv.devices:
        t = d.target().resolved()
        docs.append({"name": d.name, "type": d.device_type, "arch": d.arch, "user": t.user,
                     "host": t.host, "port": t.port, "proxy_jump": list(t.jump_chain()),
                     "proxy_command": t.proxy_command, "work_dir": d.work_dir,
                     "build": d.build, "threads": d.threads,
                     "cpu_affinity": list(d.cpu_affinity)})
    for doc in docs:
        if store:
            doc["lease_holder"] = store.holder_of(str(doc["name"]))
            doc["quarantined"] = store.quarantine(str(doc["name"]))
    emit_json(document("pattune.devices_list", {"devices": docs}), to_stdout=json_,
              path=json_out)
    if json_:
        return
    columns = ["name", "type", "arch", "login", "via", "work dir", "build", "threads", "cpus"]
    rows = []
    for doc in docs:
        login = "(this machine)" if doc["host"] is None else \
            f"{doc['user']}@{doc['host']}:{doc['port']}"
        via = " -> ".join(doc["proxy_jump"]) or (
            f"ProxyCommand {doc['proxy_command']}" if doc["proxy_command"] else "-")
        row = [str(doc["name"]), str(doc["type"]), str(doc["arch"] or "-"), login, via,
               str(doc["work_dir"] or "-"), str(doc["build"]), str(doc["threads"] or "-"),
               ",".join(map(str, doc["cpu_affinity"])) or "-"]
        if store:
            row += [str(doc["lease_holder"] or "-"), str(doc["quarantined"] or "-")]
        rows.append(row)
    print_table(out_console(), columns + (["lease holder", "quarantined"] if store else []),
                rows)


@devices_app.command("check")
def devices_check(
    names: Annotated[list[str] | None, typer.Argument(help="Devices to check (default: all).")] = None,
    inventory: InventoryOpt = None,
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
    db: LeaseDbOpt = None,
) -> None:
    """Show reachability, arch, cores, compiler, thermal state and round-trip time."""
    from concurrent.futures import ThreadPoolExecutor

    from device_farm import LeaseStore, load_inventory
    from device_farm.ssh import SSHDevice
    from pattune_common.storage import require_existing

    check_json_out(json_out)
    inv = load_inventory(inventory)
    if db:
        require_existing(db, flag="--storage")
    chosen = names or inv.names()
    devices = [inv.make(n) for n in chosen]
    for d in devices:  # a broken ssh_config is bad input (exit 2), not an unreachable device
        if isinstance(d, SSHDevice):
            d.target.resolved()
    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        reports = list(pool.map(lambda d: d.check(), devices))
    for d in devices:
        d.close()
    if db:
        store = LeaseStore(db)
        for r in reports:
            if r.reachable and store.quarantine(r.name):
                store.record_success(r.name)
                if verbosity() > QUIET:
                    print(f"{r.name}: answers again; quarantine lifted", file=sys.stderr)
    emit_json(document("pattune.devices_check", {"devices": [r.to_dict() for r in reports]}),
              to_stdout=json_, path=json_out)
    if not json_:
        print_table(out_console(), ["name", "type", "reachable", "arch", "cores", "compiler",
                                    "thermal", "rtt", "error"],
                    [[r.name, r.device_type, "yes" if r.reachable else "[red]no[/red]", r.arch,
                      str(r.cores or ""), escape(r.compiler),
                      f"{r.thermal_c:.1f} C" if r.thermal_c is not None else "-",
                      f"{r.rtt_ms:.1f} ms" if r.rtt_ms is not None else "-",
                      escape(r.error or "")]
                     for r in reports])
    if not all(r.reachable for r in reports):
        raise typer.Exit(1)


@devices_app.command("trust")
def devices_trust(
    name: Annotated[str, typer.Argument(help="Device whose host key to record.")],
    inventory: InventoryOpt = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a changed key.")] = False,
) -> None:
    """Fetch the device's host key, print its fingerprint and record it in known_hosts."""
    from device_farm import load_inventory
    from device_farm._ssh_connect import fetch_host_key, fingerprint, record_host_key

    if inventory is None:
        fail("devices trust needs --inventory naming the file that lists the device")
    inv = load_inventory(inventory)
    spec = inv.spec(name)
    target = spec.target().resolved()
    from device_farm import DeviceFault

    try:
        key = fetch_host_key(target, label=f"ssh device {name}")
    except DeviceFault as exc:
        fail(str(exc))
    what = record_host_key(target, key, replace_changed=replace)
    print(f"{target.host_key_entry} {key.get_name()} {fingerprint(key)}: {what} in "
          f"{target.known_hosts}")


@devices_app.command("clean")
def devices_clean(
    name: Annotated[str, typer.Argument(help="Device whose work dir to empty.")],
    inventory: InventoryOpt = None,
) -> None:
    """Remove the uploaded files pattune keeps in a device's work dir."""
    from device_farm import DeviceFault, load_inventory
    from device_farm.ssh import SSHDevice

    device = load_inventory(inventory).make(name)
    if not isinstance(device, SSHDevice):
        fail("devices clean works on SSH devices; the local cache is ~/.cache/pattune/local")
        return
    try:
        device.clean()
    except DeviceFault as exc:
        fail(str(exc))
    print(f"cleaned {device.work_dir} on {name}")


@app.command("measure")
def measure(
    jobs: Annotated[Path, typer.Option("--jobs", help="JSON Lines file of MeasureJobs.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="JSON Lines results (appended, resumable).")],
    inventory: InventoryOpt = None,
    device_type: DeviceTypeOpt = "local",
    db: LeaseDbOpt = None,
    warmup: Annotated[int, typer.Option(help="Warmup runs.")] = 1,
    min_repeats: Annotated[int, typer.Option(help="Fewest timed repeats.")] = 5,
    min_total_s: Annotated[float, typer.Option(help="Repeat until this many seconds.")] = 0.05,
    max_cv: Annotated[float, typer.Option(help="Highest accepted spread (std/mean).")] = 0.05,
    remeasure: Annotated[int, typer.Option(help="Extra rounds when noisy.")] = 2,
    cooldown_s: Annotated[float, typer.Option(help="Pause between jobs on a device.")] = 0.0,
    thermal_limit_c: Annotated[float | None, typer.Option(help="Wait until cooler.")] = None,
    max_attempts: Annotated[int, typer.Option(help="Devices a job may fault on.")] = 3,
    quarantine_after: Annotated[int, typer.Option(help="Consecutive faults to quarantine.")] = 3,
    lease_ttl_s: Annotated[float, typer.Option(help="Lease expiry after a crash.")] = 60.0,
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Measure every job on every healthy device of one type; rerun to resume."""
    import pattune
    from pattune_common import OutputError

    check_json_out(json_out)
    bar = _MeasureBar(out)
    try:
        result = pattune.measure(
            jobs=jobs, out=out, inventory=inventory, device_type=device_type, db=db or None,
            warmup=warmup, min_repeats=min_repeats, min_total_s=min_total_s, max_cv=max_cv,
            remeasure=remeasure, cooldown_s=cooldown_s, thermal_limit_c=thermal_limit_c,
            max_attempts=max_attempts, quarantine_after=quarantine_after,
            lease_ttl_s=lease_ttl_s, progress=bar.update,
        )
    except OutputError as exc:
        bar.stop()
        if exc.result is not None:  # show what was measured, then the one error line
            _summary(exc.result, json_)  # type: ignore[arg-type]
        raise
    finally:
        bar.stop()
    _summary(result, json_, json_out)


class _MeasureBar:
    """The batch's opening lines, then a progress bar with the farm's notices above it."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.err = err_console()
        self.shown = verbosity() > QUIET
        self.progress = Progress(TextColumn("measuring"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.description}"),
                                 console=self.err)
        self.task: TaskID | None = None
        self.started = False
        self.done = 0

    def _line(self, text: str) -> None:
        print(text, file=self.err.file, flush=True)

    def update(self, p: MeasureProgress) -> None:
        if not self.shown:
            return
        if not self.started:  # the first event: the batch is about to start
            self.started = True
            if p.skipped_lines:
                self._line(f"{self.out}: ignored {p.skipped_lines} unreadable line(s); "
                           "those jobs rerun")
            self._line(f"{p.jobs} jobs, {p.already_done} already in {self.out}, "
                       f"{p.to_measure} to measure on {p.devices} device(s) of type "
                       f"{p.device_type}")
            if self.err.is_terminal:
                self.progress.start()
                self.task = self.progress.add_task("", total=p.to_measure)
        if p.last is not None:
            self.done += 1
            if self.task is not None:
                self.progress.update(self.task, advance=1,
                                     description=f"last: {p.last.job_id} {p.last.status.value}")
            else:  # a log: one line per job
                self._line(f"measured {self.done}/{p.to_measure}: {p.last.job_id} "
                           f"{p.last.status.value}")
        if p.event is not None:
            if self.task is not None:
                self.progress.console.print(f"[yellow]{p.event}[/yellow]")
            else:
                self._line(p.event)

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()
            self.task = None


def _summary(result: MeasureResult, as_json: bool, json_out: Path | None = None) -> None:
    doc = {"statuses": dict(result.statuses), "measured_now": len(result.measured),
           "wall_s": result.wall_s, "jobs_per_s": result.jobs_per_s,
           "by_device": dict(result.by_device)}
    emit_json(document("pattune.measure_summary", doc), to_stdout=as_json, path=json_out)
    if as_json:
        return
    out = out_console()
    print_table(out, ["status", "jobs"], [[k, str(n)] for k, n in result.statuses.items()],
                title="pattune measure summary")
    out.file.write(f"measured now: {len(result.measured)} in {result.wall_s:.1f} s "
                   f"({result.jobs_per_s:.2f} jobs/s); by device: "
                   + ", ".join(f"{k}={v}" for k, v in result.by_device.items()) + "\n")


@bench_app.command("farm")
def bench_farm(
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
    jobs: Annotated[int, typer.Option(help="Jobs in the scaling batch.")] = 60,
    overhead_jobs: Annotated[int, typer.Option(help="Jobs for the overhead median.")] = 50,
    wifi_delay_ms: Annotated[float, typer.Option(help="One-way delay of the Wi-Fi proxy.")] = 30.0,
) -> None:
    """Measure SSH overhead per job and 3-over-1 device scaling against real sshd."""
    from benchmarks.farm import run_farm_bench
    from pattune_common import UserInputError

    for flag, value in (("--jobs", jobs), ("--overhead-jobs", overhead_jobs)):
        if not 1 <= value <= 10_000:
            raise UserInputError(f"{flag} must be 1-10000; got {value}")
    if not (0 <= wifi_delay_ms <= 1000):  # also false for NaN
        raise UserInputError(f"--wifi-delay-ms must be 0-1000 ms; got {wifi_delay_ms}")
    check_json_out(json_out)
    shown = verbosity() > QUIET
    summary = run_farm_bench(jobs=jobs, overhead_jobs=overhead_jobs, wifi_delay_ms=wifi_delay_ms,
                             log=lambda s: print(s, file=sys.stderr) if shown else None)
    emit_json(document("pattune.bench_farm", summary), to_stdout=json_, path=json_out,
              what="the benchmark result")
    if not json_:
        print(json.dumps(summary["summary"], sort_keys=True))
