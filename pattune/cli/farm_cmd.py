"""``pattune devices list|check|trust|clean``, ``pattune measure`` and ``pattune bench farm``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pattune.cli._app import app, bench_app, devices_app, fail

if TYPE_CHECKING:
    from rich.progress import TaskID

    from pattune import MeasureProgress, MeasureResult

_err = Console(stderr=True)
_out = Console()

InventoryOpt = Annotated[
    Path | None,
    typer.Option("--inventory", "-i", help="Inventory TOML (default: only the local device)."),
]


DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Lease database URL: also show leases and quarantines."),
]


@devices_app.command("list")
def devices_list(inventory: InventoryOpt = None, db: DbOpt = None) -> None:
    """List the devices of the inventory (plus the built-in local device)."""
    from device_farm import LeaseStore, load_inventory
    from pattune_common.storage import require_existing

    inv = load_inventory(inventory)
    if db:
        require_existing(db, flag="--db")  # listing reads; it must not create a database
    store = LeaseStore(db) if db else None
    columns = ["name", "type", "arch", "host", "work dir", "build", "threads", "cpus"]
    table = Table(*columns, *(["lease holder", "quarantined"] if store else []))
    rows = [["local", "local", "(this machine)", "-", "-", "host", "-", "-"]]
    for d in inv.devices:
        port = f":{d.port}" if d.port else ""
        via = f" via {d.proxy_jump}" if d.proxy_jump else ""
        login = f"{d.user}@{d.host}" if d.user else d.host
        rows.append([d.name, d.device_type, d.arch, f"{login}{port}{via}", d.work_dir, d.build,
                     str(d.threads or "-"), ",".join(map(str, d.cpu_affinity)) or "-"])
    for row in rows:
        if store:
            row += [store.holder_of(row[0]) or "-", store.quarantine(row[0]) or "-"]
        table.add_row(*row)
    _out.print(table)


@devices_app.command("check")
def devices_check(
    names: Annotated[list[str] | None, typer.Argument(help="Devices to check (default: all).")] = None,
    inventory: InventoryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead.")] = False,
    db: Annotated[str | None, typer.Option(
        "--db", help="Lease database URL: lift the quarantine of devices that answer.")] = None,
) -> None:
    """Show reachability, arch, cores, compiler, thermal state and round-trip time."""
    from concurrent.futures import ThreadPoolExecutor

    from device_farm import LeaseStore, load_inventory
    from pattune_common.storage import require_existing

    inv = load_inventory(inventory)
    if db:
        require_existing(db, flag="--db")
    chosen = names or inv.names()
    devices = [inv.make(n) for n in chosen]
    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        reports = list(pool.map(lambda d: d.check(), devices))
    for d in devices:
        d.close()
    if db:
        store = LeaseStore(db)
        for r in reports:
            if r.reachable and store.quarantine(r.name):
                store.record_success(r.name)
                _err.print(f"{r.name}: answers again; quarantine lifted")
    if as_json:
        for r in reports:
            print(r.to_json())
    else:
        table = Table("name", "type", "reachable", "arch", "cores", "compiler", "thermal", "rtt",
                      "error")
        for r in reports:
            table.add_row(
                r.name, r.device_type, "yes" if r.reachable else "[red]no[/red]", r.arch,
                str(r.cores or ""), r.compiler[:40],
                f"{r.thermal_c:.1f} C" if r.thermal_c is not None else "-",
                f"{r.rtt_ms:.1f} ms" if r.rtt_ms is not None else "-", r.error or "")
        _out.print(table)
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
    out: Annotated[Path, typer.Option("--out", help="JSON Lines results (appended, resumable).")],
    inventory: InventoryOpt = None,
    device_type: Annotated[str, typer.Option("--device-type", "-t", help="Device type.")] = "local",
    db: Annotated[str, typer.Option("--db", help="SQLAlchemy URL for leases.")] = "",
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
) -> None:
    """Measure every job on every healthy device of one type; rerun to resume."""
    import pattune
    from pattune_common import OutputError

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
            _summary(exc.result)  # type: ignore[arg-type]
        raise
    finally:
        bar.stop()
    _summary(result)


class _MeasureBar:
    """The batch's opening lines, then a progress bar with the farm's notices above it."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.progress = Progress(TextColumn("measuring"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.description}"),
                                 console=_err)
        self.task: TaskID | None = None

    def update(self, p: MeasureProgress) -> None:
        if self.task is None:  # the first event: the batch is about to start
            if p.skipped_lines:
                _err.print(f"{self.out}: ignored {p.skipped_lines} unreadable line(s); "
                           "those jobs rerun")
            _err.print(f"{p.jobs} jobs, {p.already_done} already in {self.out}, "
                       f"{p.to_measure} to measure on {p.devices} device(s) of type "
                       f"{p.device_type}")
            self.progress.start()
            self.task = self.progress.add_task("", total=p.to_measure)
        if p.last is not None:
            self.progress.update(self.task, advance=1,
                                 description=f"last: {p.last.job_id} {p.last.status.value}")
        if p.event is not None:
            self.progress.console.print(f"[yellow]{p.event}[/yellow]")

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()
            self.task = None


def _summary(result: MeasureResult) -> None:
    table = Table("status", "jobs", title="pattune measure summary")
    for status, n in result.statuses.items():
        table.add_row(status, str(n))
    _out.print(table)
    _out.print(f"measured now: {len(result.measured)} in {result.wall_s:.1f} s "
               f"({result.jobs_per_s:.2f} jobs/s); by device: "
               + ", ".join(f"{k}={v}" for k, v in result.by_device.items()))


@bench_app.command("farm")
def bench_farm(
    json_out: Annotated[Path, typer.Option("--json", help="Write the JSON summary here.")],
    jobs: Annotated[int, typer.Option(help="Jobs in the scaling batch.")] = 60,
    overhead_jobs: Annotated[int, typer.Option(help="Jobs for the overhead median.")] = 50,
    wifi_delay_ms: Annotated[float, typer.Option(help="One-way delay of the Wi-Fi proxy.")] = 30.0,
) -> None:
    """Measure SSH overhead per job and 3-over-1 device scaling against real sshd."""
    from benchmarks.farm import run_farm_bench
    from pattune_common import UserInputError
    from pattune_common.files import check_output_file, json_safe, write_text

    for flag, value in (("--jobs", jobs), ("--overhead-jobs", overhead_jobs)):
        if not 1 <= value <= 10_000:
            raise UserInputError(f"{flag} must be 1-10000; got {value}")
    if not (0 <= wifi_delay_ms <= 1000):  # also false for NaN
        raise UserInputError(f"--wifi-delay-ms must be 0-1000 ms; got {wifi_delay_ms}")
    check_output_file(json_out, "--json")
    summary = run_farm_bench(jobs=jobs, overhead_jobs=overhead_jobs, wifi_delay_ms=wifi_delay_ms,
                             log=lambda s: _err.print(s))
    write_text(json_out, json.dumps(json_safe(summary), indent=2, sort_keys=True) + "\n",
               what="the benchmark result")
    print(json.dumps(summary["summary"], sort_keys=True))
