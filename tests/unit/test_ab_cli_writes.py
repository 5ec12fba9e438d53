"""The A/B CLI's two outputs under faults: killed between its two writes, and two runs on the same paths at once.

Each run is a real `python -m jobs.ab.cli`-equivalent process. The faults are injected by wrapping
`storage.write_atomic` in that process (a kill at an exact point, or a slow write), the only way to hit the
moment between two renames every time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from jobs.ab import cli as ab_cli
from tests.unit.test_ab_report import arm_rows

EXP = "exp_checkout_button"
#: the CLI with a fault: FAULT=kill_after_first_write exits like a SIGKILL right after the first file is in place;
#: FAULT=kill_while_rendering before any; SLOW_WRITE=s sleeps s seconds after each write
RUNNER = """
import os, sys, time
from jobs.ab import cli, render
from jobs.common import storage
fault, slow = os.environ.get("FAULT", ""), float(os.environ.get("SLOW_WRITE", "0"))
write, report_html = storage.write_atomic, render.report_html
def faulty_write(uri, data):
    write(uri, data)
    if fault == "kill_after_first_write":
        os._exit(137)
    time.sleep(slow)
def faulty_render(*args):
    if fault == "kill_while_rendering":
        os._exit(137)
    return report_html(*args)
storage.write_atomic, render.report_html = faulty_write, faulty_render
sys.exit(cli.main(sys.argv[1:]))
"""


def counts(where: Path, treatment_conversions: int) -> Path:
    rows = arm_rows(EXP, "control", 20000, 2000) + arm_rows(EXP, "treatment", 20000, treatment_conversions)
    path = where / f"counts-{treatment_conversions}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def arguments(counts_file: Path, out: Path) -> list[str]:
    return [str(counts_file), "--date", "2026-11-20", "--experiments", EXP, "--out", str(out / "report.json"),
            "--html", str(out / "report.html")]


def cli(counts_file: Path, out: Path, **env: str) -> subprocess.Popen:
    """The CLI in a process of its own, with a fault."""
    return subprocess.Popen([sys.executable, "-c", RUNNER, *arguments(counts_file, out)], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run(counts_file: Path, out: Path) -> tuple[bytes, bytes]:
    """The CLI without a fault, in this process (quicker), and what it left."""
    assert ab_cli.main(arguments(counts_file, out)) == 0
    return outputs(out)


def finished(process: subprocess.Popen) -> int:
    _, err = process.communicate(timeout=120)
    assert process.returncode in (0, 137), err.decode()
    return process.returncode


def outputs(where: Path) -> tuple[bytes, bytes]:
    return (where / "report.json").read_bytes(), (where / "report.html").read_bytes()


def test_a_kill_between_the_two_writes_is_mended_by_the_rerun(tmp_path):
    yesterday, today = counts(tmp_path, 2200), counts(tmp_path, 2400)
    reference = run(today, tmp_path / "reference")
    out = tmp_path / "out"
    before = run(yesterday, out)

    assert finished(cli(today, out, FAULT="kill_while_rendering")) == 137
    assert outputs(out) == before  # nothing written
    assert finished(cli(today, out, FAULT="kill_after_first_write")) == 137
    json_now, html_now = outputs(out)
    assert (json_now, html_now) == (before[0], reference[1])  # the HTML first, the JSON still the old one
    assert run(today, out) == reference  # the analyst's rerun
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json"]  # no staged leftovers


def test_two_runs_on_the_same_paths_publish_one_after_the_other(tmp_path):
    """Without the lock, the slow run's JSON lands after the fast run's pair: a JSON from one run beside the HTML
    of the other."""
    slow_counts, fast_counts = counts(tmp_path, 2200), counts(tmp_path, 2400)
    fast_reference = run(fast_counts, tmp_path / "fast")
    assert run(slow_counts, tmp_path / "slow") != fast_reference
    out = tmp_path / "out"
    slow = cli(slow_counts, out, SLOW_WRITE="3")
    deadline = time.monotonic() + 60
    while not (out / "report.html").exists():  # the slow run holds the lock, its HTML written
        assert time.monotonic() < deadline and slow.poll() is None
        time.sleep(0.05)
    fast = cli(fast_counts, out)
    assert finished(fast) == 0 and finished(slow) == 0
    assert outputs(out) == fast_reference  # the later publisher's pair, whole
