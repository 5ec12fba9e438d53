"""docker-compose.yaml stays pinned and in step with the Python pins."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from jobs.cdc import settings as cdc_settings

REPO = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_spark_images_match_pyspark():
    images = {s["image"] for s in compose()["services"].values() if "apache/spark" in s.get("image", "")}
    assert images and {re.match(r"apache/spark:([\d.]+)-", i).group(1) for i in images} == {pins()["pyspark"]}


def test_airflow_image_matches_the_airflow_pin():
    dockerfile = (REPO / "docker" / "airflow.Dockerfile").read_text()
    assert f"FROM apache/airflow:{pins()['apache-airflow']}-python3.11" in dockerfile


def test_every_image_is_pinned_and_maintained():
    for name, service in compose()["services"].items():
        image = service.get("image", "")
        assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), name
        assert not image.startswith(("bitnami/", "minio/minio")), name


def test_spark_worker_image_matches_pyspark_and_has_what_als_needs():
    dockerfile = (REPO / "docker" / "spark.Dockerfile").read_text()
    assert f"FROM apache/spark:{pins()['pyspark']}-scala2.13-java17-python3-ubuntu" in dockerfile
    assert "libopenblas0" in dockerfile and "numpy pandas pyarrow" in dockerfile
    worker = compose()["services"]["spark-worker"]
    assert worker["build"]["dockerfile"] == "docker/spark.Dockerfile"
    assert worker["image"].endswith(f":{pins()['pyspark']}")


def test_the_celery_profile_has_a_broker_and_a_worker_on_the_same_settings():
    services = compose()["services"]
    assert services["redis"]["profiles"] == ["celery"] == services["airflow-worker"]["profiles"]
    worker = services["airflow-worker"]
    assert worker["command"] == "celery worker" and worker["image"] == services["airflow-scheduler"]["image"]
    assert worker["depends_on"]["redis"] == {"condition": "service_healthy"}
    env = worker["environment"]
    assert env == services["airflow-scheduler"]["environment"]  # one anchor: the same settings everywhere
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert "apache-airflow-providers-celery" in pins()  # the image installs requirements.txt


LONG_RUNNING = {"postgres", "oltp", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                "airflow-triggerer", "airflow-worker", "redis", "spark-master", "spark-worker", "kafka",
                "kafka-connect", "s3"}


def test_debian_docker_compose_accepts_the_file_with_and_without_the_celery_profile(tmp_path):
    """`docker-compose config` (Debian's docker-compose, scripts/pipeline.sh installs it) with .env.example."""
    shutil.copy(REPO / "docker-compose.yaml", tmp_path)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    for args in ([], ["--profile", "celery"]):
        result = subprocess.run(["docker-compose", *args, "config", "-q"], cwd=tmp_path, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
    (tmp_path / "docker-compose.yaml").write_text((REPO / "docker-compose.yaml").read_text().replace(
        "condition: service_healthy", "condition: service_wonderful", 1))
    assert subprocess.run(["docker-compose", "config", "-q"], cwd=tmp_path, capture_output=True).returncode != 0


def test_every_service_is_healthchecked_restarted_and_started_on_conditions():
    services = compose()["services"]
    assert LONG_RUNNING | {"airflow-init", "connect-init", "s3-init"} == set(services)
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert services[name].get("restart") == "unless-stopped", name
    for name, service in services.items():
        assert isinstance(service.get("depends_on", {}), dict), f"{name}: depends_on without conditions"
        assert "sleep" not in json.dumps(service.get("command", "")) + json.dumps(service.get("entrypoint", "")), name
    assert services["airflow-apiserver"]["healthcheck"]["test"][-1].endswith("/api/v2/version")
    assert "DagProcessorJob" in services["airflow-dag-processor"]["healthcheck"]["test"][-1]
    assert "TriggererJob" in services["airflow-triggerer"]["healthcheck"]["test"][-1]
    assert "airflow-logs:/opt/airflow/logs" in services["airflow-scheduler"]["volumes"]
    assert any("4040" in port for port in services["airflow-scheduler"]["ports"])  # the Spark driver UI


def test_the_oltp_database_and_the_debezium_connector_feed_what_the_cdc_job_expects():
    services = compose()["services"]
    assert "wal_level=logical" in services["oltp"]["command"]
    assert services["oltp"]["environment"]["POSTGRES_DB"] == "app"
    connector = json.loads((REPO / "include" / "debezium" / "shop-postgres.json").read_text())
    cdc = cdc_settings.load()
    assert connector["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert connector["topic.prefix"] == cdc.topic_prefix  # topics cdc.<schema>.<table>, which the drain reads
    assert set(connector["table.include.list"].split(",")) == {t.source for t in cdc.tables}
    assert (connector["database.hostname"], connector["database.dbname"]) == ("oltp", "app")
    for side in ("key", "value"):  # schemaless JSON: cdc.yaml's column types say how values are decoded
        assert connector[f"{side}.converter"] == "org.apache.kafka.connect.json.JsonConverter"
        assert connector[f"{side}.converter.schemas.enable"] == "false"
    # decimals as base64 unscaled bytes, which cdc.yaml declares for every decimal column without `encoding`
    assert connector["decimal.handling.mode"] == "precise"
    assert not [c for t in cdc.tables for c in t.columns if c.encoding == "string"]
    assert connector["tombstones.on.delete"] == "true"  # the parser checks tombstones against the deletes
    assert connector["database.password"].startswith("${env:")  # no credential in the repository
    init = services["connect-init"]
    assert "shop-postgres.json" in init["entrypoint"] and init["depends_on"]["kafka-connect"]["condition"] == \
        "service_healthy"
