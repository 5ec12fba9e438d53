"""A real Spark standalone cluster on loopback: a master and workers started with `spark-class` from the
pyspark wheel, each worker in a clean environment (its own working directory, no repository anywhere on its
Python path), and a Python for the executors that has the pinned packages but not the project.

Used by tests/integration/test_spark_cluster.py and benchmarks/nightly_end_to_end.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
SPARK_CLASS = str(SPARK_HOME / "bin" / "spark-class")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def executor_python(where: Path) -> str:
    """A venv whose only site entry is this venv's site-packages, added as a plain path: `.pth` files there
    (the editable install of the project among them) are not processed, so the project is not importable and
    the executors must get it from `--py-files`."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "pinned_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return str(python)


def clean_env(home: Path) -> dict[str, str]:
    """What a cluster machine's daemon has: Java, a PATH, a home; no PYTHONPATH, no pipeline settings."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "SPARK_HOME": str(SPARK_HOME),
           "SPARK_LOG_DIR": str(home / "logs"), "SPARK_NO_DAEMONIZE": "1", "LANG": "C.UTF-8"}
    if os.environ.get("JAVA_HOME"):
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    return env


@dataclass
class Cluster:
    """A master and its workers; `url` is what the `spark_default` connection points at."""

    base: Path
    port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    master: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    python: str = ""

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        home = self.base / name
        home.mkdir(parents=True, exist_ok=True)
        log = open(home / "daemon.log", "wb")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen([SPARK_CLASS, *args], cwd=home, env=clean_env(home), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, workers: int = 2, cores: int = 1, memory: str = "2g") -> Cluster:
        self.python = executor_python(self.base / "executor-venv")
        self.master = self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                  "--port", str(self.port), "--webui-port", str(self.web_port))
        self._wait(lambda status: "ALIVE" in status, "the master")
        for n in range(workers):
            self.add_worker(n, cores, memory)
        self._wait(lambda status: status.count("ALIVE") >= 1 + workers, f"{workers} workers")
        return self

    def add_worker(self, n: int, cores: int = 1, memory: str = "2g") -> subprocess.Popen:
        work = self.base / f"worker-{n}" / "work"
        worker = self._start(f"worker-{n}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                             "--cores", str(cores), "--memory", memory, "--work-dir", str(work),
                             "--webui-port", str(free_port()), self.url)
        self.workers.append(worker)
        return worker

    def status(self) -> str:
        """The master's JSON status page (workers and applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/json/", timeout=5) as response:
            return response.read().decode()

    def _wait(self, ready, what: str, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if ready(self.status()):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{what} did not start: see {self.base}/*/daemon.log")

    def conf(self) -> dict[str, str]:
        """Spark conf a job on this cluster needs beyond the pipeline's: the executors' Python, executors and
        shuffles sized for two one-core workers and test data (as the tests' local session is)."""
        return {"spark.pyspark.python": self.python, "spark.pyspark.driver.python": sys.executable,
                "spark.executor.memory": "1g", "spark.driver.memory": "1g", "spark.driver.host": "127.0.0.1",
                "spark.sql.shuffle.partitions": "4"}

    def stop(self) -> None:
        for proc in [*self.workers, self.master]:
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, self.master]:
            if proc:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)
