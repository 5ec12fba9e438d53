"""Driver-side file access without Spark: the Kafka drain, the demo, and the lake's commit protocol.

pyarrow's filesystems serve `file://` and `s3://` (`s3a://` is mapped to it) from one API.
Writes are atomic: the bytes go to a hidden temporary name first and are renamed into place,
so a reader or a crash never sees half a file. The commit primitives (`move`, `exchange`,
`create_exclusive`) are atomic on a local filesystem; what they give on S3 is said where they are.
"""

from __future__ import annotations

import ctypes
import functools
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


def local_path(uri: str) -> str | None:
    """The filesystem path of a `file://` URI (None for object stores)."""
    return uri[len("file://"):] if uri.startswith("file://") else None


def exists(uri: str) -> bool:
    filesystem, path = resolve(uri)
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    filesystem, path = resolve(uri)
    return filesystem.get_file_info(path).type == pafs.FileType.Directory


def delete(uri: str) -> None:
    """Delete a file or a directory tree; a missing one is fine."""
    filesystem, path = resolve(uri)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        filesystem.delete_dir(path)
    elif info.type == pafs.FileType.File:
        filesystem.delete_file(path)


def children(uri: str) -> list[str]:
    """The URIs directly below a directory (a missing one has none), sorted."""
    filesystem, path = resolve(uri)
    found = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(f"{uri.rstrip('/')}/{info.base_name}" for info in found)


def modified(uri: str) -> float:
    """Last modification time (epoch seconds)."""
    filesystem, path = resolve(uri)
    return filesystem.get_file_info(path).mtime.timestamp()


def move(src: str, dst: str) -> None:
    """Rename `src` (a file or a directory) to `dst`, which must not exist. Atomic on a local filesystem;
    on an object store a copy then a delete."""
    local_src, local_dst = local_path(src), local_path(dst)
    if local_src is not None and local_dst is not None:
        os.makedirs(os.path.dirname(local_dst), exist_ok=True)
        if os.path.exists(local_dst):
            raise FileExistsError(f"cannot move {src}: {dst} exists")
        os.rename(local_src, local_dst)
        return
    copy(src, dst)
    delete(src)


def exchange(a: str, b: str) -> bool:
    """Swap two existing paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`): a reader of either
    path sees the old or the new one, never neither. False where the store cannot (object stores)."""
    local_a, local_b = local_path(a), local_path(b)
    if local_a is None or local_b is None:
        return False
    if _libc().renameat2(_AT_FDCWD, local_a.encode(), _AT_FDCWD, local_b.encode(), _RENAME_EXCHANGE) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot exchange {a} and {b}: {os.strerror(errno)}")
    return True


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create `uri` with `data` only if it does not exist yet (False if it does): O_EXCL on a local
    filesystem, a conditional PUT (`If-None-Match: *`) on S3. The primitive a lock or a log is built on."""
    local = local_path(uri)
    if local is not None:
        os.makedirs(os.path.dirname(local), exist_ok=True)
        try:
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    if uri.startswith(("s3://", "s3a://")):
        import boto3
        from botocore.exceptions import ClientError

        bucket, _, key = uri.split("://", 1)[1].partition("/")
        try:
            boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True
    raise NotImplementedError(f"no exclusive create for {uri}: the lake supports file:// and s3:// roots")


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return libc


def parquet_rows(uri: str) -> int:
    """The rows of one Parquet file, from its footer."""
    import pyarrow.parquet as pq

    filesystem, path = resolve(uri)
    with filesystem.open_input_file(path) as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def link(src: str, dst: str) -> None:
    """Give the file `src` a second name `dst`: a hard link on a local filesystem (no data copied), a server-side
    copy on an object store. Lake files are never changed in place, so the two names stay the same data."""
    local_src, local_dst = local_path(src), local_path(dst)
    if local_src is not None and local_dst is not None:
        os.makedirs(os.path.dirname(local_dst), exist_ok=True)
        os.link(local_src, local_dst)
        return
    copy(src, dst)


def copy(src: str, dst: str) -> None:
    """Copy a directory tree (or a file) to `dst`."""
    filesystem, src_path = resolve(src)
    _, dst_path = resolve(dst)
    if filesystem.get_file_info(src_path).type == pafs.FileType.Directory:
        filesystem.create_dir(dst_path, recursive=True)  # copy_files creates subdirectories, not the base
        pafs.copy_files(src_path, dst_path, source_filesystem=filesystem, destination_filesystem=filesystem)
    else:
        filesystem.copy_file(src_path, dst_path)
