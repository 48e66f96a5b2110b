"""The distribution installs one import name, `sla_sync` (issue 12): nothing else lands in
site-packages, so uninstalling sla-sync cannot delete another project's `rules` package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT, build_wheel


def wheel_names(tmp_path: Path) -> list[str]:
    with zipfile.ZipFile(build_wheel(ROOT, tmp_path)) as wheel:
        return wheel.namelist()


def test_the_wheel_holds_one_package_and_its_metadata(tmp_path: Path) -> None:
    names = wheel_names(tmp_path)
    top = {name.split("/")[0] for name in names}
    assert top == {"sla_sync", "sla_sync-0.1.0.dist-info"}, sorted(top)
    package = {name for name in names if name.startswith("sla_sync/")}
    sources = {f"sla_sync/{path.relative_to(ROOT)}" for folder in ("connector", "rules")
               for path in (ROOT / folder).glob("*.py")}
    sources |= {f"sla_sync/{path.name}" for path in ROOT.glob("*.py")}
    assert package == sources  # every module, and no tests, benchmarks, tools or examples
    assert "sla_sync/sync.py" in package and "sla_sync/connector/file.py" in package
    entry = zipfile.Path(tmp_path / next(p.name for p in tmp_path.glob("*.whl")),
                         "sla_sync-0.1.0.dist-info/entry_points.txt").read_text()
    assert "sla-sync = sla_sync.sync:main" in entry


def test_the_installed_package_runs_from_its_own_files(tmp_path: Path) -> None:
    """Unpacked without the repository on the path, `python -m sla_sync` answers, and the
    old top-level names are not importable from it."""
    target = tmp_path / "site"
    with zipfile.ZipFile(build_wheel(ROOT, tmp_path / "wheel")) as wheel:
        wheel.extractall(target)
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = {"PYTHONPATH": ":".join([str(target), *site]), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-S", "-m", "sla_sync", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert "Usage: " in done.stdout and "run" in done.stdout
    probe = ("import importlib.util as u, sla_sync; "
             "print(sla_sync.__file__); "
             "print([n for n in ('connector', 'rules', 'sync', 'sync_state') if u.find_spec(n)])")
    done = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    where, leftovers = done.stdout.splitlines()
    assert where.startswith(str(target)), where
    assert leftovers == "[]"
