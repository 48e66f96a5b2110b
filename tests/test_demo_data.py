"""The demo generator: its committed output is what it writes, byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_the_generator_writes_the_committed_demo_desk(tmp_path: Path):
    out = tmp_path / "helpdesk.json"
    subprocess.run([sys.executable, str(ROOT / "examples/generate_helpdesk.py"), "--out",
                    str(out)], check=True, capture_output=True)
    assert out.read_bytes() == (ROOT / "examples/helpdesk.json").read_bytes()


def test_a_scaled_desk_has_the_same_mix_times_the_scale():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from generate_helpdesk import generate
    finally:
        sys.path.remove(str(ROOT / "examples"))
    one, three = generate()["records"], generate(scale=3, seed=5)["records"]
    assert len(three) == 3 * len(one) == 600
    for field in ("kind", "tier"):
        counts = {value: sum(r[field] == value for r in one) for value in {r[field] for r in one}}
        assert {v: sum(r[field] == v for r in three) for v in counts} == {
            v: 3 * n for v, n in counts.items()}
    assert len({r["id"] for r in three}) == 600
