"""Leases and device health on every storage (SQLite file, real PostgreSQL)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

from sqlalchemy import inspect

from device_farm import LeaseStore
from pattune_common.storage import SCHEMA_VERSION, schema_version

pytest_plugins = ["tests.farm.fixtures"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_one_holder_at_a_time_and_release(db_url):
    a, b = LeaseStore(db_url, holder="a"), LeaseStore(db_url, holder="b")
    la = a.try_acquire("pixel-3")
    assert la is not None and la.holder == "a"
    assert b.try_acquire("pixel-3") is None
    assert b.holder_of("pixel-3") == "a"
    assert b.try_acquire("pixel-4") is not None  # other devices are independent
    a.release(la)
    lb = b.try_acquire("pixel-3")
    assert lb is not None and lb.holder == "b"


def test_expired_lease_frees_the_device_and_the_old_holder_cannot_renew(db_url):
    # ttl generous enough that a loaded machine cannot let it lapse between two lines
    a, b = LeaseStore(db_url, holder="a", ttl_s=1.0), LeaseStore(db_url, holder="b", ttl_s=1.0)
    la = a.try_acquire("d")
    assert la is not None
    assert a.renew(la)
    assert b.try_acquire("d") is None
    time.sleep(1.1)
    lb = b.try_acquire("d")
    assert lb is not None
    assert not a.renew(la)
    a.release(la)  # releasing a lost lease must not free the new holder's
    assert a.holder_of("d") == "b"


def test_held_renews_in_the_background(db_url):
    a, b = LeaseStore(db_url, holder="a", ttl_s=1.0), LeaseStore(db_url, holder="b")
    la = a.try_acquire("d")
    assert la is not None
    with a.held(la, every_s=0.1) as lost:
        time.sleep(2.5)  # more than twice the ttl
        assert b.try_acquire("d") is None
        assert not lost.is_set()
    assert b.try_acquire("d") is not None  # released on exit


def test_quarantine_after_consecutive_failures_and_reset(db_url):
    s = LeaseStore(db_url)
    assert not s.record_failure("d", "e1", threshold=3, quarantine_s=60)
    assert not s.record_failure("d", "e2", threshold=3, quarantine_s=60)
    s.record_success("d")
    assert not s.record_failure("d", "e3", threshold=3, quarantine_s=60)
    assert s.quarantine("d") is None
    assert not s.record_failure("d", "e4", threshold=3, quarantine_s=60)
    assert s.record_failure("d", "e5", threshold=3, quarantine_s=60)
    assert LeaseStore(db_url).quarantine("d") == "e5"  # seen by every process


def test_opening_migrates_once_and_makes_only_prefixed_tables(db_url):
    for _ in range(3):
        s = LeaseStore(db_url)
    assert schema_version(s.engine) == SCHEMA_VERSION
    names = set(inspect(s.engine).get_table_names())
    assert {"farm_leases", "farm_device_health"} <= names
    # One migration history for the whole database: the records' tables come with it.
    assert all(n.startswith(("farm_", "pt_")) for n in names)


_WORKER = """
import json, sys, time
from device_farm import LeaseStore
from pattune_common.storage import SCHEMA_VERSION, schema_version
url, name, rounds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = LeaseStore(url, holder=name, ttl_s=5)
spans = []
while len(spans) < rounds:
    lease = store.acquire("board-1", timeout_s=60, poll_s=0.005)
    t0 = time.time(); time.sleep(0.01); t1 = time.time()
    store.release(lease)
    spans.append((t0, t1))
json.dump(spans, open(out, "w"))
"""


def test_processes_never_hold_one_device_together(db_url, tmp_path):
    LeaseStore(db_url)  # create tables before the race
    procs, outs = [], []
    for i in range(4):
        out = tmp_path / f"spans{i}.json"
        outs.append(out)
        procs.append(subprocess.Popen([sys.executable, "-c", _WORKER, db_url, f"p{i}", "15",
                                       str(out)], cwd=ROOT))
    for p in procs:
        assert p.wait(timeout=240) == 0
    spans = sorted(s for out in outs for s in json.loads(out.read_text()))
    assert len(spans) == 60
    for (a0, a1), (b0, _) in itertools.pairwise(spans):
        assert b0 >= a1, f"two holders overlapped: {a0}-{a1} and {b0}"


_CRASHER = """
import sys, time
from device_farm import LeaseStore
from pattune_common.storage import SCHEMA_VERSION, schema_version
store = LeaseStore(sys.argv[1], holder="crasher", ttl_s=3.0)
lease = store.acquire("board-1", timeout_s=10)
print("held", flush=True)
time.sleep(600)
"""


def test_a_crashed_holder_frees_its_device_after_the_ttl(db_url):
    p = subprocess.Popen([sys.executable, "-c", _CRASHER, db_url], cwd=ROOT,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    store = LeaseStore(db_url, holder="survivor")
    assert store.holder_of("board-1") == "crasher"
    t0 = time.monotonic()
    lease = store.acquire("board-1", timeout_s=10, poll_s=0.05)
    assert lease is not None and lease.holder == "survivor"
    assert 0.0 < time.monotonic() - t0 < 4.0  # freed by expiry (3 s ttl), not by waiting forever


_LOCAL_CRASHER = """
import sys, time
from device_farm import LeaseStore
from pattune_common.storage import SCHEMA_VERSION, schema_version
store = LeaseStore(sys.argv[1], ttl_s=3600.0)  # default holder: host:pid:random
lease = store.acquire("board-2", timeout_s=10)
print(lease.holder, flush=True)
time.sleep(600)
"""


def test_a_killed_holder_on_this_host_frees_its_device_at_once(db_url):
    p = subprocess.Popen([sys.executable, "-c", _LOCAL_CRASHER, db_url], cwd=ROOT,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    holder = p.stdout.readline().strip()
    assert holder.split(":")[1] == str(p.pid)
    survivor = LeaseStore(db_url)
    assert survivor.try_acquire("board-2") is None  # alive: its lease is respected
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    # Its lease would last an hour; its process is gone from this host, so no wait.
    lease = survivor.try_acquire("board-2")
    assert lease is not None and lease.holder == survivor.holder
