"""Driver-side file access for code that runs without Spark (Kafka drain, demo generator).

pyarrow's filesystems serve `file://` and `s3://` (`s3a://` is mapped to it) from one API.
Writes are atomic: the bytes go to a hidden temporary name first and are renamed into place,
so a reader or a crash never sees half a file.
"""

from __future__ import annotations

import os
import uuid

from pyarrow import fs as pafs


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://"):]
    return pafs.FileSystem.from_uri(uri)


def write_atomic(uri: str, data: bytes) -> None:
    """Write `data` to `uri` durably: temp file, fsync (local), then rename into place."""
    filesystem, path = resolve(uri)
    parent, name = path.rsplit("/", 1)
    filesystem.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    if isinstance(filesystem, pafs.LocalFileSystem):
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    else:
        with filesystem.open_output_stream(tmp) as out:
            out.write(data)
        filesystem.move(tmp, path)


def read_bytes(uri: str) -> bytes:
    filesystem, path = resolve(uri)
    with filesystem.open_input_stream(path) as fh:
        return fh.read()


def list_files(uri: str, suffix: str = "") -> list[str]:
    """Files below `uri` (recursive) as URIs, sorted; a missing directory lists as empty."""
    filesystem, path = resolve(uri)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    prefix = uri[: len(uri) - len(path)] if uri.endswith(path) else ""
    return sorted(
        prefix + info.path
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File
        and info.path.endswith(suffix)
        and not info.base_name.startswith(".")
    )
