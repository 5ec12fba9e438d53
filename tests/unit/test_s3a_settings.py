"""The Spark settings of a lake on `s3a://` and the pinned jars every spark-submit passes: in step with pyspark's
Hadoop, Spark and Scala, and with the compose stack's defaults."""

from __future__ import annotations

from pathlib import Path

import pyspark

from jobs.common import config
from jobs.common.paths import Lake

REPO = Path(__file__).resolve().parents[2]


def test_the_pinned_jars_match_the_hadoop_spark_and_scala_pyspark_ships():
    shipped = [p.name for p in (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")]
    hadoop = shipped[0].removeprefix("hadoop-client-api-").removesuffix(".jar")
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    scala = [p.name for p in (Path(pyspark.__file__).parent / "jars").glob("scala-library-*.jar")][0].split("-")[-1]
    names = [Path(jar).name for jar in config.spark_jars()]
    assert f"hadoop-aws-{hadoop}.jar" in names
    assert any(n.startswith(f"iceberg-spark-runtime-{spark_minor}_{scala[:4]}-") for n in names), names
    pom = (REPO / "jvm" / "pom.xml").read_text()
    assert "<packaging>pom</packaging>" in pom and all(n.rsplit("-", 1)[0] in pom for n in names)


def test_set_up_fetched_every_pinned_jar_with_its_checksum():
    import hashlib

    for line in (REPO / config.JARS_MANIFEST).read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((config.jars_dir() / name).read_bytes()).hexdigest() == digest, name


def test_settings_for_an_s3_compatible_store(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://s3:8333")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-in-conf")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    conf = config.s3a_conf()
    assert conf == {
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
        "spark.hadoop.fs.s3a.endpoint": "http://s3:8333", "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false"}
    assert "not-in-conf" not in str(conf)  # credentials never reach the command line
    # the compose stack's spark-defaults.conf says the same for its SeaweedFS
    defaults = dict(line.split(None, 1) for line in
                    (REPO / "docker" / "spark-conf" / "spark-defaults.conf").read_text().splitlines()
                    if line.strip() and not line.startswith("#"))
    assert {k: v.strip() for k, v in defaults.items() if k in conf} == conf


def test_aws_itself_needs_no_endpoint(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert config.s3a_conf()["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert "spark.hadoop.fs.s3a.endpoint" not in config.s3a_conf()


def test_the_operator_adds_them_only_for_an_s3a_lake(monkeypatch):
    from pipeline_airflow import spark

    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://minio.internal:9000")
    local = spark.spark_job("clickstream_bronze", doc_md="", options={})
    assert not any(k.startswith("spark.hadoop.fs.s3a") for k in local.conf)
    monkeypatch.setattr(spark, "LAKE", Lake("s3a://lake/prod"))
    on_s3 = spark.spark_job("clickstream_bronze", doc_md="", options={})
    assert on_s3.conf["spark.hadoop.fs.s3a.endpoint"] == "https://minio.internal:9000"
    assert on_s3.conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"
    assert on_s3.conf["spark.sql.shuffle.partitions"]  # the pipeline's own conf is kept
