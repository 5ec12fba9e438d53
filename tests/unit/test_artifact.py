"""The code artifact for the executors: reproducible, complete, versioned, and importable on its own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

from jobs.common import artifact, config


def test_the_same_sources_give_the_same_file(tmp_path):
    first = artifact.build(tmp_path / "a")
    second = artifact.build(tmp_path / "b")
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    assert artifact.build(tmp_path / "a") == first  # built once per version
    names = set(zipfile.ZipFile(first).namelist())
    wanted = {p.relative_to(config.REPO_ROOT).as_posix() for p in artifact.sources()}
    assert names == wanted | {"jobs/_artifact.json"}
    assert {"jobs/cdc/changelog.py", "jobs/als/topk.py"} <= names  # what the executors run
    record = json.loads(zipfile.ZipFile(first).read("jobs/_artifact.json"))
    assert record["name"] == first.name == f"pipeline-jobs-{record['version']}.zip"
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file left


def test_any_change_of_a_source_changes_the_version(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(config.JOBS_DIR, copy / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    files = artifact.sources(copy / "jobs")
    before = artifact.version(files, copy)
    (copy / "jobs" / "cdc" / "changelog.py").write_text((copy / "jobs" / "cdc" / "changelog.py").read_text() + "\n")
    assert artifact.version(files, copy) != before


def test_code_run_from_the_artifact_knows_it_and_finds_the_settings(tmp_path):
    """What a driver does under spark-submit --py-files: `jobs` imported from the zip (no site-packages, so not
    from the checkout), the manifests' code_artifact set, include/ found in the checkout it was built from."""
    built = artifact.build(tmp_path)
    probe = ("import jobs.common.config as c; "
             "print(c.__file__); print(c.code_artifact()); print(c.include_path('pipeline.yaml').is_file())")
    out = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(built)},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [f"{built}/jobs/common/config.py", built.name, "True"]
    assert config.code_artifact() is None  # the tests run from the checkout
