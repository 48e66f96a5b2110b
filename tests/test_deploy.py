"""The service examples in deploy/ work: the systemd unit's and the CronJob's command lines
run a real sync against the file helpdesk (their paths moved into a temporary folder), and
the container build copies what the installed `sla-sync` needs. No systemd, Kubernetes or
container engine runs here; `systemd-analyze verify` is used when it is installed."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, build_wheel, record_dict
from sla_sync.sync_config import load_config

DEPLOY = ROOT / "deploy"
SLA_SYNC = Path(sys.executable).parent / "sla-sync"
POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [{"name": "late", "conditions": {"all": [
        {"name": "first_response_breached", "operator": "is_true"}]},
        "actions": [{"name": "add_note", "params": {"text": "first response is late"}}]}],
}


def installed_sla_sync() -> str:
    assert SLA_SYNC.is_file(), f"{SLA_SYNC}: no sla-sync beside this Python; run " \
        "`pip install -e .` in this environment first"
    return str(SLA_SYNC)


def file_desk(folder: Path, state: Path, policy: Path) -> Path:
    """A file helpdesk of three tickets, the policy at `policy`; a config naming both and the
    state file; returns the config's text to place where the example expects it."""
    folder.mkdir(parents=True, exist_ok=True)
    policy.parent.mkdir(parents=True, exist_ok=True)
    desk = folder / "helpdesk.json"
    desk.write_text(json.dumps({"records": [record_dict(id=f"T-{n}") for n in (1, 2, 3)]}))
    policy.write_text(json.dumps(POLICY))
    return desk


def config_text(desk: Path, policy: Path, state: Path) -> str:
    return (f"connector: {{type: file, path: {desk}}}\npolicy: {policy}\nstate: {state}\n"
            "first_run: act\n")


def moved(text: str, places: dict[str, Path]) -> str:
    for prefix, place in places.items():
        text = text.replace(prefix, str(place))
    return text


def runs_logged(state: Path) -> list[tuple[str, int]]:
    """(status, records read) of each run in the state file's run log."""
    with sqlite3.connect(state) as db:
        return db.execute("SELECT status, read FROM runs ORDER BY id").fetchall()


def writes_logged(state: Path) -> list[int]:
    with sqlite3.connect(state) as db:
        return [row[0] for row in db.execute("SELECT writes FROM runs ORDER BY id")]


# -- systemd ---------------------------------------------------------------------------------

def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name)
    return parser


def test_the_timer_starts_the_service_every_five_minutes() -> None:
    timer = unit("sla-sync.timer")
    assert timer["Timer"]["Unit"] == "sla-sync.service"
    assert timer["Timer"]["OnUnitActiveSec"] == "5min"
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert (DEPLOY / "systemd" / timer["Timer"]["Unit"]).is_file()


def test_the_service_runs_a_sync_as_its_own_user_with_its_state_kept(tmp_path: Path) -> None:
    service = unit("sla-sync.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["User"] not in ("", "root", "0")
    assert service["UMask"] == "0077"
    assert service["StateDirectory"] == "sla-sync"
    success = {0, *map(int, service["SuccessExitStatus"].split())}
    assert success == {0, 3, 4}, "1 and 2 must fail the unit: they need a person"
    places = {"/opt/sla-sync/bin/sla-sync": Path(installed_sla_sync()),
              "/etc/sla-sync": tmp_path / "etc", "/var/lib/sla-sync": tmp_path / "var"}
    (tmp_path / "var").mkdir()  # what StateDirectory= creates
    command = shlex.split(moved(service["ExecStart"], places))
    env_file = Path(moved(service["EnvironmentFile"].lstrip("-"), places))
    env_file.parent.mkdir(parents=True)
    shutil.copy(DEPLOY / "systemd" / "secrets.env.example", env_file)
    environment = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                       if line and not line.startswith("#"))
    assert set(environment) == {"ZENDESK_TOKEN"}
    config = Path(command[command.index("--config") + 1])
    state = tmp_path / "var" / "state.db"
    desk = file_desk(tmp_path / "desk", state, tmp_path / "etc" / "policy.json")
    config.write_text(config_text(desk, tmp_path / "etc" / "policy.json", state))
    for attempt in (1, 2):
        done = subprocess.run(command, cwd=moved(service["WorkingDirectory"], places),
                              env={**os.environ, **environment}, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode in success and done.returncode == 0, done.stderr
        assert f"run {attempt}: read " in done.stderr + done.stdout
    assert [status for status, _ in runs_logged(state)] == ["ok", "ok"]
    assert runs_logged(state)[0] == ("ok", 3)
    assert writes_logged(state)[1] == 0, "the second run wrote again"


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    for name in ("sla-sync.service", "sla-sync.timer"):
        text = (DEPLOY / "systemd" / name).read_text()
        # Only the binary's place changes: verify checks that ExecStart exists.
        text = text.replace("/opt/sla-sync/bin/sla-sync", installed_sla_sync())
        (tmp_path / name).write_text(text)
    done = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "sla-sync.timer"),
                           str(tmp_path / "sla-sync.service")], capture_output=True,
                          text=True, timeout=60)
    # verify exits 0 on a value it ignores ("Failed to parse timer value, ignoring"): every
    # line about our files is a problem. Lines about the machine's other units are not ours.
    problems = [line for line in done.stderr.splitlines() if str(tmp_path) in line]
    assert done.returncode == 0 and not problems, done.stderr


# -- Kubernetes ------------------------------------------------------------------------------

def manifests() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "sla-sync.yaml").read_text()))
    return {doc["kind"]: doc for doc in docs}


def test_the_cronjob_never_overlaps_and_keeps_its_state_on_the_claim(tmp_path: Path) -> None:
    found = manifests()
    cronjob = found["CronJob"]["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    assert cronjob["jobTemplate"]["spec"]["backoffLimit"] == 0
    pod = cronjob["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    claim = found["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    shipped = tmp_path / "config.yaml"
    shipped.write_text(found["ConfigMap"]["data"]["config.yaml"])
    state = load_config(shipped, environ={"ZENDESK_TOKEN": "x"}).state
    assert state.is_absolute()
    assert mounts[str(state.parent)]["persistentVolumeClaim"]["claimName"] == \
        claim["metadata"]["name"]


def test_the_cronjob_reads_secrets_from_a_secret_and_holds_none() -> None:
    found = manifests()
    [container] = found["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"]
    variables = set(re.findall(r"\$\{(\w+)\}", found["ConfigMap"]["data"]["config.yaml"]))
    assert variables == {"ZENDESK_TOKEN"}
    env = {item["name"]: item for item in container["env"]}
    for name in variables:
        assert "value" not in env[name], f"{name} is inline"
        assert set(env[name]["valueFrom"]["secretKeyRef"]) == {"name", "key"}
    assert all("value" not in item for item in container["env"])
    assert "Secret" not in found, "a Secret with its value does not belong in the example"


def test_the_cronjob_command_runs_a_sync(tmp_path: Path) -> None:
    found = manifests()
    pod = found["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["sla-sync"]
    places = {"/etc/sla-sync": tmp_path / "etc", "/var/lib/sla-sync": tmp_path / "state"}
    for mount in container["volumeMounts"]:  # the volumes, as the kubelet mounts them
        where = Path(moved(mount["mountPath"], places))
        (where.parent if "subPath" in mount else where).mkdir(parents=True, exist_ok=True)
    shipped = yaml.safe_load(found["ConfigMap"]["data"]["config.yaml"])
    state = Path(moved(shipped["state"], places))
    policy = Path(moved(shipped["policy"], places))
    desk = file_desk(tmp_path / "desk", state, policy)
    args = [moved(arg, places) for arg in container["args"]]
    config = Path(args[args.index("--config") + 1])
    config.write_text(config_text(desk, policy, state))
    env = {item["name"]: "from-the-secret" for item in container["env"]}
    done = subprocess.run([installed_sla_sync(), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert runs_logged(state) == [("ok", 3)]


# -- the container image ---------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "container" / "Containerfile").read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_image_runs_as_a_user_with_the_state_on_a_volume() -> None:
    steps = instructions()
    users = [value for op, value in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    volumes = [json.loads(value) for op, value in steps if op == "VOLUME"]
    assert ["/var/lib/sla-sync"] in volumes
    assert [json.loads(value) for op, value in steps if op == "ENTRYPOINT"] == [["sla-sync"]]


def test_the_image_copies_what_the_entry_point_needs(tmp_path: Path) -> None:
    """The COPY sources exist, and the package built from them alone, installed into a
    folder, runs a sync through `sla-sync`'s entry point (no site hooks: the editable
    install would find the worktree)."""
    context = tmp_path / "context"
    copied: set[str] = set()
    for op, value in instructions():
        if op != "COPY":
            continue
        *patterns, target = value.split()
        sources = []
        for pattern in patterns:  # COPY takes Go filepath.Match patterns, here only `*`
            found = sorted(p.name for p in ROOT.glob(pattern)) if "*" in pattern else [pattern]
            assert found and (ROOT / found[0]).exists(), \
                f"COPY {pattern}: not in the repository"
            sources += found
        for source in sources:
            copied.add(source)
            into = context / target.removeprefix("./") if target.endswith("/") and \
                target != "./" else context
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, into, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, into)
    modules = {p.name for p in ROOT.glob("*.py")}
    assert modules <= copied, f"not copied into the image: {sorted(modules - copied)}"
    target = tmp_path / "installed"
    with zipfile.ZipFile(build_wheel(context, tmp_path / "wheel")) as wheel:
        wheel.extractall(target)
    pyproject = tomllib.loads((context / "pyproject.toml").read_text())
    module, function = pyproject["project"]["scripts"]["sla-sync"].split(":")
    state = tmp_path / "state" / "state.db"
    desk = file_desk(tmp_path / "desk", state, tmp_path / "policy.json")
    config = tmp_path / "config.yaml"
    config.write_text(config_text(desk, tmp_path / "policy.json", state))
    site = [p for p in sys.path if p.endswith("site-packages")]
    done = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; from {module} import {function}; "
         f"sys.argv[0] = 'sla-sync'; {function}()", "run", "--config", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *site])})
    assert done.returncode == 0, done.stderr
    assert runs_logged(state) == [("ok", 3)]
