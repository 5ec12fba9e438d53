"""The project's code as one file for the Spark executors: a zip of the `jobs` package for `--py-files`.

Executors run project code (the CDC parser's `mapPartitions`, the ALS top-K's `mapInPandas`) and on a
cluster they have nothing but the pinned Python packages. The operator builds this artifact before every
spark-submit and ships it; a person does the same by hand:

    spark-submit --py-files "$(python -m jobs.common.artifact)" jobs/cdc_merge.py --date 2026-11-20

The zip is reproducible: named by a hash of the sources it holds (same code, same file, built once), with
fixed timestamps, and it carries `jobs/_artifact.json` (that hash, the git commit, the checkout it was built
from), which every manifest records as `code_artifact`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

from jobs.common import config

#: Inside the zip: what the artifact is (read back by `config.code_artifact`).
RECORD = "_artifact.json"
#: A fixed time for every member, so the same sources give the same bytes.
EPOCH = (1980, 1, 1, 0, 0, 0)


def sources(root: Path = config.JOBS_DIR) -> list[Path]:
    """The package's Python files, in a stable order (no caches, nothing else)."""
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def version(files: list[Path], base: Path = config.REPO_ROOT) -> str:
    """12 hex digits of a hash over every file's path and bytes: changes whenever any source changes."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def build(out_dir: Path | None = None) -> Path:
    """The artifact of the current sources, built if it does not exist yet (atomically: concurrent builds of the
    same code write the same bytes and the last rename wins)."""
    files = sources()
    name = version(files)
    target = (out_dir or config.artifact_dir()) / f"pipeline-jobs-{name}.zip"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    record = {"name": target.name, "version": name, "git_commit": config.git_commit(),
              "built_from": str(config.REPO_ROOT)}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                _add(zf, path.relative_to(config.REPO_ROOT).as_posix(), path.read_bytes())
            _add(zf, f"jobs/{RECORD}", json.dumps(record, indent=2, sort_keys=True).encode())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=EPOCH)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


if __name__ == "__main__":  # prints the path, for `spark-submit --py-files "$(python -m jobs.common.artifact)"`
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
