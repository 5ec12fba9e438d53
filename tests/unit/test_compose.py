"""docker-compose.yaml stays pinned and in step with the Python pins."""

import re
from pathlib import Path

import yaml

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
