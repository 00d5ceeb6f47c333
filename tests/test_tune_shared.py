"""Two tuner processes share one study and one farm of real sshd devices on real PostgreSQL.

Started by the test: PostgreSQL (initdb + pg_ctl in a temp dir) and two OpenSSH
servers on loopback ports, listed in an inventory as devices of one type. Both
``pattune tune`` processes work the same study; afterwards no config was
measured twice and no device ran two measurements at once.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from pathlib import Path

import optuna
import sqlalchemy as sa

from benchmarks.harness.sshd import SshdFarm
from tests.support.pg import PostgresServer
from tests.tune.support import popen, tune_args

pytest_plugins = ["tests.support.storages"]


def write_inventory(path: Path, farm: SshdFarm) -> str:
    parts = [
        f'[defaults]\nknown_hosts = "{farm.known_hosts}"\nidentity_file = "{farm.client_key}"\n'
        f'user = "{farm.user}"\nssh_config = "{os.devnull}"\n'
    ]
    for s in farm.servers:
        parts.append(
            f'[[device]]\nname = "{s.name}"\nhost = "127.0.0.1"\nport = {s.port}\n'
            f'type = "loop"\narch = "x86_64"\nwork_dir = "{s.work_dir}"\n'
        )
    path.write_text("\n".join(parts))
    return str(path)


def test_two_tuners_share_study_and_farm(tmp_path: Path, pg_server: PostgresServer) -> None:
    url = pg_server.create_database(f"t_{uuid.uuid4().hex[:8]}")
    farm = SshdFarm(str(tmp_path / "sshd"), 2)
    try:
        inv = write_inventory(tmp_path / "inv.toml", farm)
        procs = []
        for k in range(2):
            work = tmp_path / f"w{k}"
            work.mkdir()
            args = tune_args(work, storage=url, study="shared", trials=4)
            args += ["--device-type", "loop", "--inventory", inv]
            procs.append(popen(*args, log=tmp_path / f"tuner{k}.log"))
        for k, p in enumerate(procs):
            assert p.wait(timeout=900) == 0, (tmp_path / f"tuner{k}.log").read_text()[-3000:]
    finally:
        farm.stop()

    eng = sa.create_engine(url)
    with eng.connect() as c:
        rows = c.execute(
            sa.text(
                "SELECT device_type_id, layer_id, config_id, owner, status, detail "
                "FROM pt_measurements"
            )
        ).all()
    eng.dispose()
    assert rows
    keys = [(r[0], r[1], r[2]) for r in rows]
    assert len(keys) == len(set(keys))  # never measured twice
    assert all(r[4] in ("done", "failed") for r in rows)  # no claim left behind
    spans = defaultdict(list)
    for r in rows:
        d = r[5]
        if d.get("device"):
            spans[d["device"]].append((d["started_at"], d["finished_at"]))
    assert set(spans) <= {"dev0", "dev1"} and spans
    for device, iv in spans.items():
        iv.sort()
        for (_, end), (start, _) in zip(iv, iv[1:], strict=False):
            assert start >= end - 1e-3, f"{device} ran two measurements at once"
    study = optuna.load_study(study_name="shared", storage=url)
    states = [t.state for t in study.get_trials()]
    assert optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 4
