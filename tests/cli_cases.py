"""The bad inputs of the table-driven CLI test: every subcommand, files, flags, URLs.

Each case is ``(id, argv, fragment)``: running ``pattune *argv`` must fail with one
line on stderr that contains ``fragment`` (the flag, file or value at fault). The
files a case names are made by :func:`make_files` in a scratch folder; ``{d}`` in
an argument stands for that folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: The password every storage URL of the table carries; no output may contain it.
PASSWORD = "pw-7Kq2-never-shown"
PG_DOWN = f"postgresql://tuner:{PASSWORD}@127.0.0.1:9/db"  # port 9: nothing listens

Case = tuple[str, list[str], str]

GOOD_DEVICE = '[[device]]\nname = "p"\nhost = "127.0.0.1"\ntype = "t"\nwork_dir = "/w/x"\n'

INVENTORIES = {
    "not_toml": "[[device]\nname = 'x'\n",
    "no_devices": "# nothing\n",
    "device_string": 'device = ["x"]\n',
    "device_table": '[device]\nname = "x"\n',
    "unknown_top": 'devices = 1\n' + GOOD_DEVICE,
    "unknown_key": GOOD_DEVICE + 'colour = "red"\n',
    "missing_host": '[[device]]\nname = "p"\ntype = "t"\nwork_dir = "/w/x"\n',
    "name_local": GOOD_DEVICE.replace('"p"', '"local"'),
    "name_newline": GOOD_DEVICE.replace('"p"', '"p\\n"'),
    "name_int": GOOD_DEVICE.replace('"p"', '5'),
    "env_option": GOOD_DEVICE + 'env = { "-Stouch /tmp/pattune-pwned" = "1" }\n',
    "env_not_table": GOOD_DEVICE + 'env = "A=1"\n',
    "threads_negative": GOOD_DEVICE + "threads = -4\n",
    "threads_bool": GOOD_DEVICE + "threads = true\n",
    "port_zero": GOOD_DEVICE + "port = 0\n",
    "port_big": GOOD_DEVICE + "port = 70000\n",
    "port_string": GOOD_DEVICE + 'port = "22"\n',
    "arch_bad": GOOD_DEVICE + 'arch = "mips"\n',
    "build_bad": GOOD_DEVICE + 'build = "cloud"\n',
    "affinity_bad": GOOD_DEVICE + "cpu_affinity = [-1]\n",
    "affinity_string": GOOD_DEVICE + 'cpu_affinity = "0-3"\n',
    "timeout_nan": GOOD_DEVICE + "connect_timeout_s = nan\n",
    "timeout_inf": GOOD_DEVICE + "connect_timeout_s = inf\n",
    "workdir_relative": GOOD_DEVICE.replace('"/w/x"', '"w/x"'),
    "workdir_root": GOOD_DEVICE.replace('"/w/x"', '"/"'),
    "workdir_dotdot": GOOD_DEVICE.replace('"/w/x"', '"/w/../etc"'),
    "workdir_shell": GOOD_DEVICE.replace('"/w/x"', '"/w/$(id)"'),
    "host_option": GOOD_DEVICE.replace('"127.0.0.1"', '"-oProxyCommand=x"'),
    "user_option": GOOD_DEVICE + 'user = "-l"\n',
    "compiler_option": GOOD_DEVICE + 'compiler = "-fplugin=x.so"\n',
    "duplicate": GOOD_DEVICE * 2,
    "defaults_unknown": '[defaults]\nname = "x"\n' + GOOD_DEVICE,
    "jump_empty_hop": GOOD_DEVICE + 'proxy_jump = "hub,,hub2"\n',
    "jump_option": GOOD_DEVICE + 'proxy_jump = "hub,-oProxyCommand=x"\n',
    "jump_too_long": GOOD_DEVICE + 'proxy_jump = "' + ",".join(["h"] * 9) + '"\n',
}
#: An inventory that parses, whose ssh_config OpenSSH refuses.
SSH_CONFIG_BAD = '[defaults]\nssh_config = "bad_ssh_config"\n' + GOOD_DEVICE


def _job(d: Path, **change: object) -> str:
    art = {"files": [{"local_path": str(d / "prog.sh"), "executable": True}],
           "argv": ["prog.sh", "{repeats}"], "verify": {}}
    line: dict[str, object] = {"job_id": "j1", "artifact": art, "timeout_s": 5}
    for key, value in change.items():
        if key.startswith("a_"):
            art[key[2:]] = value
        else:
            line[key] = value
    return json.dumps(line)


def _jobs(d: Path) -> dict[str, str]:
    return {
        "not_json": "{not json\n",
        "not_object": "[1, 2]\n",
        "empty": "\n\n",
        "missing_id": _job(d).replace('"job_id": "j1", ', ""),
        "id_newline": _job(d, job_id="j1\n"),
        "id_int": _job(d, job_id=5),
        "timeout_1e999": _job(d).replace('"timeout_s": 5', '"timeout_s": 1e999'),
        "timeout_nan": _job(d).replace('"timeout_s": 5', '"timeout_s": NaN'),
        "timeout_negative": _job(d, timeout_s=-1),
        "timeout_string": _job(d, timeout_s="60"),
        "argv_string": _job(d, a_argv="prog.sh"),
        "argv_empty": _job(d, a_argv=[]),
        "argv_number": _job(d, a_argv=["prog.sh", 3]),
        "placeholder": _job(d, a_argv=["prog.sh", "{other}"]),
        "checksum_string": _job(d, a_verify={"checksum": "abc"}),
        "checksum_list": _job(d, a_verify={"checksum": [1]}),
        "rtol_negative": _job(d, a_verify={"checksum": 1.0, "rtol": -1}),
        "env_option": _job(d, a_env=[["-Sx", "1"]]),
        "files_string": _job(d, a_files="prog.sh"),
        "file_missing": _job(d, a_files=[{"local_path": str(d / "nope.sh")}]),
        "file_name_slash": _job(d, a_files=[{"local_path": str(d / "prog.sh"),
                                             "name": "a/b"}]),
        "sha_bad": _job(d, a_files=[{"local_path": str(d / "prog.sh"), "sha256": "x"}]),
        "unknown_field": _job(d, colour="red"),
        "duplicate_id": _job(d) + "\n" + _job(d),
    }


def make_files(d: Path) -> None:
    """Write every file the cases name into ``d``."""
    (d / "prog.sh").write_text("#!/bin/sh\necho '{\"times_s\": [0.001]}'\n")
    os.chmod(d / "prog.sh", 0o755)
    for name, body in INVENTORIES.items():
        (d / f"inv_{name}.toml").write_text(body)
    (d / "inv_good.toml").write_text(GOOD_DEVICE)
    for name, body in _jobs(d).items():
        (d / f"jobs_{name}.jsonl").write_text(body + "\n")
    (d / "jobs_good.jsonl").write_text(_job(d) + "\n")
    (d / "garbage.bin").write_bytes(b"\x00\xffnot anything\n" * 10)
    (d / "notadb.db").write_text("hello, not a database\n")
    (d / "adir").mkdir(exist_ok=True)
    (d / "a_file").write_text("x")
    (d / "space_bad.toml").write_text("[patterns]\nk = 'many'\n")
    (d / "space_unknown.toml").write_text("[colours]\nred = 1\n")
    (d / "space_kernel_str.toml").write_text("kernel = 'fast'\n")
    (d / "space_typo_budget.toml").write_text("[kernel]\nbudgte = 3\n")
    (d / "space_typo_per_layer.toml").write_text("[connectivity]\nper_layr = false\n")
    (d / "space_typo_k.toml").write_text("[patterns]\nK = [4]\n")
    (d / "space_fixed_unknown.toml").write_text("[kernel]\nfixed = { threadz = 1 }\n")
    (d / "space_budget_inf.toml").write_text("[kernel]\nbudget = inf\n")
    (d / "bad_ssh_config").write_text("Host p\n  Bogus yes\n")
    (d / "inv_ssh_config_bad.toml").write_text(SSH_CONFIG_BAD)
    (d / "target_bad.toml").write_text("cc = 5\n")
    (d / "pattern_set_bad.json").write_text('{"patterns": "all"}')


def _numbers(cmd: list[str], flags: dict[str, list[str]], tail: list[str]) -> list[Case]:
    out = []
    for flag, values in flags.items():
        for v in values:
            out.append((f"{'-'.join(cmd)}{flag}={v}", [*cmd, flag, v, *tail], flag))
    return out


def cases() -> list[Case]:
    """Every case of the table (well over 150)."""
    d = "{d}"
    tiny = ["--model", "tests.tune.tiny:tiny_bn", "--input-shape", "1,1,12,12"]
    tune = ["tune", *tiny, "--storage", f"sqlite:///{d}/t.db", "--work-dir", f"{d}/work"]
    measure = ["measure", "--jobs", f"{d}/jobs_good.jsonl", "--out", f"{d}/out.jsonl",
               "--db", f"sqlite:///{d}/m.db"]
    out: list[Case] = []

    # numbers: NaN, infinity, negatives, zero where it makes no sense, not numbers
    out += _numbers(["tune"], {"--trials": ["0", "-3", "abc"],
                               "--max-accuracy-drop": ["nan", "-0.5", "inf"],
                               "--estimate-samples": ["0"], "--seed": ["-1"]},
                    tune[1:])
    out += _numbers(["measure"], {"--max-cv": ["nan", "0", "-1"], "--min-total-s": ["nan", "inf"],
                                  "--thermal-limit-c": ["nan", "inf"], "--warmup": ["-1"],
                                  "--min-repeats": ["0"], "--remeasure": ["-2"],
                                  "--cooldown-s": ["-1"], "--max-attempts": ["0"],
                                  "--quarantine-after": ["0"], "--lease-ttl-s": ["0", "nan"]},
                    measure[1:])
    out += _numbers(["patterns"], {"--top": ["-1", "0"], "--n": ["0", "10"]},
                    ["--model", "tests.tune.tiny:tiny_bn", "--input-shape", "1,1,12,12"])
    out += _numbers(["prune"], {"--patterns": ["0", "99"], "--finetune-samples": ["-5"],
                                "--train-epochs": ["nan"], "--admm-epochs": ["-1"],
                                "--threads": ["0"], "--test-samples": ["0"],
                                "--train-samples": ["-1"]}, tiny)
    out += _numbers(["bench", "farm"], {"--jobs": ["-1", "0"], "--overhead-jobs": ["0"],
                                        "--wifi-delay-ms": ["nan", "-5"]},
                    ["--json", f"{d}/bf.json"])
    out += _numbers(["bench", "kernels"], {"--connectivity": ["0.5", "0", "-2", "abc"],
                                           "--threads": ["0"], "--budget": ["0"],
                                           "--rounds": ["-1"], "--patterns": ["0"]}, [])
    out += _numbers(["bench", "search"], {"--seeds": ["0"], "--budget": ["-1"], "--batch": ["0"],
                                          "--within": ["nan", "-1"], "--workers": ["0"],
                                          "--candidates-per-measure": ["0"]}, [])
    out += _numbers(["record"], {"--repeats": ["0"], "--batch": ["0"], "--passes": ["0"],
                                 "--min-total-s": ["nan", "-1"], "--max-configs": ["0"]},
                    ["--out", f"{d}/r.json.gz"])
    out += _numbers(["export"], {"--max-accuracy-drop": ["nan", "-1"]},
                    ["--storage", f"sqlite:///{d}/none.db", "--out", f"{d}/ex"])

    # inventories, through every command that reads one
    for name in INVENTORIES:
        out.append((f"devices-list-inv-{name}", ["devices", "list", "-i", f"{d}/inv_{name}.toml"],
                    f"inv_{name}.toml"))
    for name in ("not_toml", "device_string", "env_option", "threads_negative", "timeout_nan"):
        inv = f"{d}/inv_{name}.toml"
        out += [
            (f"devices-check-inv-{name}", ["devices", "check", "-i", inv], inv),
            (f"measure-inv-{name}", [*measure, "-i", inv, "-t", "t"], inv),
            (f"tune-inv-{name}", [*tune, "--inventory", inv, "--device-type", "t"], inv),
            (f"trust-inv-{name}", ["devices", "trust", "p", "-i", inv], inv),
            (f"clean-inv-{name}", ["devices", "clean", "p", "-i", inv], inv),
            (f"record-inv-{name}", ["record", "--out", f"{d}/r.json.gz", "--inventory", inv,
                                    "--device-type", "t"], inv),
        ]
    for path, what in ((f"{d}/missing.toml", "does not exist"), (f"{d}/adir", "is a directory"),
                       ("/dev/zero", "not a regular file"), (f"{d}/garbage.bin", "garbage.bin")):
        out += [(f"devices-list-path-{what}", ["devices", "list", "-i", path], path),
                (f"measure-inv-path-{what}", [*measure, "-i", path], path)]

    # jobs files
    for name in _jobs(Path("/")):
        out.append((f"measure-jobs-{name}", ["measure", "--jobs", f"{d}/jobs_{name}.jsonl",
                                             "--out", f"{d}/out.jsonl",
                                             "--db", f"sqlite:///{d}/m.db"],
                    f"jobs_{name}.jsonl"))
    for path in (f"{d}/missing.jsonl", f"{d}/adir", "/dev/zero", f"{d}/garbage.bin"):
        out.append((f"measure-jobs-path-{Path(path).name}",
                    ["measure", "--jobs", path, "--out", f"{d}/out.jsonl"], path))

    # outputs that cannot be written
    for path in (f"{d}/adir", f"{d}/missing/out.jsonl", "/sys/kernel/out.jsonl"):
        out.append((f"measure-out-{path}", [*measure[:3], "--out", path], path))
    out += [
        ("tune-summary-dir", [*tune, "--summary-json", f"{d}/adir"], f"{d}/adir"),
        ("tune-summary-missing", [*tune, "--summary-json", f"{d}/no/s.json"], f"{d}/no"),
        ("tune-workdir-file", [*tune[:-2], "--work-dir", f"{d}/a_file"], "--work-dir"),
        ("prune-out-file", ["prune", *tiny, "--out", f"{d}/a_file"], "--out"),
        ("prune-json-dir", ["prune", *tiny, "--json", f"{d}/adir"], "--json"),
        ("prune-json-sys", ["prune", *tiny, "--json", "/sys/kernel/x.json"], "--json"),
        ("export-out-file", ["export", "--storage", f"sqlite:///{d}/notadb.db",
                             "--out", f"{d}/a_file"], "notadb.db"),
        ("bench-farm-json-dir", ["bench", "farm", "--json", f"{d}/adir"], "--json"),
        ("bench-accuracy-json-sys", ["bench", "accuracy", "--json", "/sys/kernel/a.json"],
         "--json"),
        ("bench-kernels-json-missing", ["bench", "kernels", "--json", f"{d}/no/k.json"],
         "--json"),
        ("record-out-ext", ["record", "--out", f"{d}/r.txt"], "--out"),
    ]

    # --json-out (every reporting command) to a folder or into a missing one, checked
    # before the work; the old --json PATH alias goes the same way
    reporting = {
        "tune": tune, "status": ["status", "--storage", f"sqlite:///{d}/none.db"],
        "export": ["export", "--storage", f"sqlite:///{d}/none.db", "--out", f"{d}/ex"],
        "measure": measure, "devices-list": ["devices", "list"],
        "devices-check": ["devices", "check"], "prune": ["prune", *tiny],
        "patterns": ["patterns"], "bench-kernels": ["bench", "kernels"],
        "bench-farm": ["bench", "farm"], "bench-search": ["bench", "search"],
        "bench-accuracy": ["bench", "accuracy"], "measurements": ["measurements"],
    }
    for name, argv in reporting.items():
        out += [(f"{name}-json-out-dir", [*argv, "--json-out", f"{d}/adir"], f"{d}/adir"),
                (f"{name}-json-out-missing", [*argv, "--json-out", f"{d}/no/x.json"], f"{d}/no")]
    out += [
        ("prune-json-alias-eq", ["prune", *tiny, f"--json={d}/adir"], f"{d}/adir"),
        ("tune-summary-json-alias", [*tune, "--summary-json", f"{d}/no/s.json"], f"{d}/no"),
        ("devices-list-ssh-config-bad", ["devices", "list", "-i", f"{d}/inv_ssh_config_bad.toml"],
         "bad_ssh_config: line 2: Bad configuration option: bogus"),
        ("devices-check-ssh-config-bad",
         ["devices", "check", "-i", f"{d}/inv_ssh_config_bad.toml"], "bad_ssh_config"),
        ("measurements-missing-db", ["measurements", "-s", f"sqlite:///{d}/none.db"],
         "none.db"),
        ("measurements-status", ["measurements", "--status", "great"], "--status"),
        ("dashboard-missing-db", ["dashboard", "-s", f"sqlite:///{d}/none.db"], "none.db"),
        ("dashboard-port", ["dashboard", "--port", "70000"], "--port"),
        ("dashboard-port-text", ["dashboard", "--port", "http"], "--port"),
        ("dashboard-bad-url", ["dashboard", "-s", PG_DOWN], ""),
        ("quiet-still-one-error-line", ["-q", "status", "--storage", f"sqlite:///{d}/none.db"],
         "none.db"),
        ("verbose-still-one-error-line", ["status", "-v", "-s", f"sqlite:///{d}/none.db"],
         "none.db"),
    ]

    # storage URLs, every one with a password that must never be shown
    urls = {
        "mysql": f"mysql://u:{PASSWORD}@h/db",
        "garbage": f"not a url {PASSWORD}",
        "pg_down": PG_DOWN,
        "pg_no_host": f"postgresql://u:{PASSWORD}@/db?host=/nonexistent",
        "sqlite_dir": f"sqlite:///{d}/adir",
        "sqlite_notdb": f"sqlite:///{d}/notadb.db",
        "sqlite_missing_dir": f"sqlite:///{d}/no/such/dir/x.db",
        "query_password": f"postgresql://u@127.0.0.1:9/db?password={PASSWORD}",
    }
    for name, url in urls.items():
        shown = "sqlite" if url.startswith("sqlite") else ""
        out += [
            (f"status-{name}", ["status", "--storage", url], shown),
            (f"export-{name}", ["export", "--storage", url, "--out", f"{d}/ex-{name}"], shown),
            (f"tune-{name}", [*tune[:-4], "--storage", url], shown),
            (f"measure-db-{name}", [*measure[:5], "--db", url], shown),
            (f"devices-list-db-{name}", ["devices", "list", "--db", url], shown),
        ]

    # names, choices and forms
    out += [
        ("unknown-command", ["frobnicate"], "frobnicate"),
        ("unknown-flag", ["status", "--colour", "red"], "--colour"),
        ("missing-required", ["measure", "--jobs", f"{d}/jobs_good.jsonl"], "--out"),
        ("trust-without-inventory", ["devices", "trust", "p"], "--inventory"),
        ("trust-unknown-device", ["devices", "trust", "nope", "-i", f"{d}/inv_good.toml"],
         "nope"),
        ("clean-local", ["devices", "clean", "local"], "local"),
        ("check-unknown-device", ["devices", "check", "nope", "-i", f"{d}/inv_good.toml"], "nope"),
        ("measure-unknown-type", [*measure, "-i", f"{d}/inv_good.toml", "-t", "pixel"], "pixel"),
        ("tune-objective", [*tune, "--objective", "fastest"], "--objective"),
        ("tune-latency-no-drop", [*tune, "--objective", "latency"], "--max-accuracy-drop"),
        ("tune-strategy", [*tune, "--strategy", "genetic"], "--strategy"),
        ("tune-timeout", [*tune, "--timeout", "soon"], "--timeout"),
        ("tune-timeout-nan", [*tune, "--timeout", "nan"], "--timeout"),
        ("tune-device-type", [*tune, "--device-type", "pixel"], "pixel"),
        ("tune-batch-2", ["tune", "--model", "tests.tune.tiny:tiny_bn", "--input-shape",
                          "2,1,12,12", "--storage", f"sqlite:///{d}/t.db"], "--input-shape"),
        ("tune-shape-text", [*tune, "--input-shape", "big"], "--input-shape"),
        ("tune-space-dir", [*tune, "--space", f"{d}/adir"], "adir"),
        ("tune-space-missing", [*tune, "--space", f"{d}/no.toml"], "no.toml"),
        ("tune-space-bad", [*tune, "--space", f"{d}/space_bad.toml"], "space_bad.toml"),
        ("tune-space-unknown", [*tune, "--space", f"{d}/space_unknown.toml"], "space_unknown"),
        ("tune-space-kernel-str", [*tune, "--space", f"{d}/space_kernel_str.toml"],
         "space_kernel_str"),
        ("tune-space-devzero", [*tune, "--space", "/dev/zero"], "/dev/zero"),
        ("tune-space-typo-budget", [*tune, "--space", f"{d}/space_typo_budget.toml"],
         "[kernel] budgte; [kernel] allows budget, candidates_per_measure"),
        ("tune-space-typo-per-layer", [*tune, "--space", f"{d}/space_typo_per_layer.toml"],
         "[connectivity] per_layr; [connectivity] allows layers, per_layer, rates"),
        ("tune-space-typo-k", [*tune, "--space", f"{d}/space_typo_k.toml"],
         "[patterns] K; [patterns] allows k, sets"),
        ("tune-space-budget-inf", [*tune, "--space", f"{d}/space_budget_inf.toml"],
         "space_budget_inf.toml"),
        ("tune-space-fixed-unknown", [*tune, "--space", f"{d}/space_fixed_unknown.toml"],
         "threadz; fields are fkr"),
        ("tune-model-unknown", ["tune", "--model", "nosuchmodel", "--storage",
                                f"sqlite:///{d}/t.db"], "nosuchmodel"),
        ("tune-model-garbage", ["tune", "--model", f"{d}/garbage.bin", "--input-shape",
                                "1,1,12,12", "--storage", f"sqlite:///{d}/t.db"], "garbage.bin"),
        ("tune-model-module", ["tune", "--model", "no.such.module:f", "--input-shape",
                               "1,1,12,12", "--storage", f"sqlite:///{d}/t.db"], "no.such.module"),
        ("tune-target-unknown", [*tune, "--target", "mars"], "mars"),
        ("tune-target-bad", [*tune, "--target", f"{d}/target_bad.toml"], "target_bad"),
        ("tune-evaluate-bad", [*tune, "--evaluate", "nope:nope"], "nope"),
        ("export-unknown-study", ["export", "--storage", f"sqlite:///{d}/none.db",
                                  "--out", f"{d}/ex"], "none.db"),
        ("status-missing-db", ["status", "--storage", f"sqlite:///{d}/none.db"], "none.db"),
        ("prune-connectivity", ["prune", *tiny, "--connectivity", "lots"], "connectivity"),
        ("prune-connectivity-neg", ["prune", *tiny, "--connectivity", "-1"], "connectivity"),
        ("prune-layer-rate", ["prune", *tiny, "--layer-rate", "nope"], "--layer-rate"),
        ("prune-method", ["prune", *tiny, "--method", "magic"], "magic"),
        ("prune-admm-contradiction", ["prune", *tiny, "--admm", "--method", "oneshot"],
         "--admm"),
        ("prune-pattern-set-bad", ["prune", *tiny, "--pattern-set", f"{d}/pattern_set_bad.json"],
         "pattern"),
        ("prune-pattern-set-text", ["prune", *tiny, "--pattern-set", "1,2,3/9,9"], "pattern"),
        ("prune-model-unknown", ["prune", "--model", "nosuchmodel"], "nosuchmodel"),
        ("prune-shape", ["prune", "--model", "tests.tune.tiny:tiny_bn", "--input-shape",
                         "1,1,0,12"], "--input-shape"),
        ("patterns-model-unknown", ["patterns", "--model", "nosuchmodel"], "nosuchmodel"),
        ("bench-kernels-model", ["bench", "kernels", "--model", "nosuchmodel"], "nosuchmodel"),
        ("bench-kernels-layers", ["bench", "kernels", "--layers", "features.99",
                                  "--dataset", "cifar"], "features.99"),
        ("bench-kernels-target", ["bench", "kernels", "--target", "mars"], "mars"),
        ("bench-search-set-missing", ["bench", "search", "--set", f"{d}/none.json.gz"],
         "none.json.gz"),
        ("bench-search-set-garbage", ["bench", "search", "--set", f"{d}/garbage.bin"],
         "garbage.bin"),
        ("bench-search-strategy", ["bench", "search", "--strategies", "genetic"], "genetic"),
        ("bench-search-statistic", ["bench", "search", "--statistic", "mode"], "mode"),
        ("record-pin", ["record", "--out", f"{d}/r.json.gz", "--pin", "colour=red"], "--pin"),
        ("record-space", ["record", "--out", f"{d}/r.json.gz", "--space", "huge"], "--space"),
        ("record-target", ["record", "--out", f"{d}/r.json.gz", "--target", "mars"], "mars"),
        ("record-layers", ["record", "--out", f"{d}/r.json.gz", "--layers", "conv9_9"],
         "conv9_9"),
        ("record-model", ["record", "--out", f"{d}/r.json.gz", "--model", "nosuchmodel"],
         "nosuchmodel"),
    ]
    return out


def expand(argv: list[str], d: Path) -> list[str]:
    """``argv`` with ``{d}`` replaced by the scratch folder."""
    return [a.replace("{d}", str(d)) for a in argv]
