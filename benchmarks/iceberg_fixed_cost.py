"""What the Iceberg change costs a small night: the same jobs by spark-submit from this checkout and from an earlier
revision (before the pinned jars and the Iceberg tables), alternately, on copies of one generated lake.

Two jobs: `clickstream_bronze` on a 5,000-event day (this revision only adds the jars to its class path) and
`ab_report` for the next night (this revision writes its three tables as Iceberg commits instead of Parquet
directories). Wall seconds and CPU seconds (the children's resource usage), medians over the repeats.

    python benchmarks/iceberg_fixed_cost.py [--before 1082c51] [--events 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from submit import demo_lake, timed

from jobs.common import artifact, catalog, config, settings

DAYS = ("2026-11-19", "2026-11-20")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def submit(checkout: Path, conf: dict[str, str], py_files: str, job: str, lake: str, log: Path) -> tuple[float, float]:
    """One spark-submit of `job` for the last day (bronze first, on a fresh copy: it does the whole day); (wall,
    CPU) seconds."""
    options = [a for key, value in conf.items() for a in ("--conf", f"{key}={value}")]
    command = ["spark-submit", *options, "--py-files", py_files, str(checkout / "jobs" / f"{job}.py"),
               "--date", DAYS[-1], "--lake-root", lake]
    cpu = cpu_seconds()
    wall = timed(command, {**os.environ, "PIPELINE_HOME": str(checkout)}, log)
    return wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="1082c51", help="the earlier revision (default: before the jars)")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="iceberg-cost-"))
    before = work / "before"
    subprocess.run(["git", "-C", str(config.REPO_ROOT), "worktree", "add", "--detach", str(before), args.before],
                   check=True, capture_output=True)
    try:
        source = work / "source"
        demo_lake(source.as_uri(), DAYS[0], len(DAYS), args.events, 500)
        old_zip = subprocess.run([sys.executable, "-m", "jobs.common.artifact"], cwd=before, check=True, text=True,
                                 capture_output=True, env={**os.environ, "PIPELINE_HOME": str(before),
                                                           "PIPELINE_ARTIFACT_DIR": str(work / "old-zip")})
        revisions = {f"before ({args.before})": (before, settings.pipeline().spark_conf, old_zip.stdout.strip()),
                     "this revision": (config.REPO_ROOT, catalog.submit_conf(), str(artifact.build()))}
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for repeat in range(args.repeats):
            for label, (checkout, conf, py_files) in revisions.items():
                lake = work / f"lake-{repeat}-{label.split()[0]}"
                shutil.copytree(source, lake)
                for job in ("clickstream_bronze", "ab_report"):
                    figures.setdefault((job, label), []).append(
                        submit(checkout, conf, py_files, job, lake.as_uri(), work / "log"))
                shutil.rmtree(lake)
        print(f"{args.events:,} events a day, {args.repeats} runs each, medians (wall s / CPU s):")
        for job in ("clickstream_bronze", "ab_report"):
            rows = {label: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
                    for (name, label), runs in figures.items() if name == job}
            (old_wall, old_cpu), (new_wall, new_cpu) = rows.values()
            print(f"  {job:<20} " + "  ".join(f"{label}: {w:5.1f} / {c:5.1f}" for label, (w, c) in rows.items())
                  + f"  ratio {new_wall / old_wall:.2f}x wall, {new_cpu / old_cpu:.2f}x CPU")
    finally:
        subprocess.run(["git", "-C", str(config.REPO_ROOT), "worktree", "remove", "--force", str(before)],
                       check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
