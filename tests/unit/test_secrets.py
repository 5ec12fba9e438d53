"""Secrets: demo defaults only in the demo mode; elsewhere a missing, short or placeholder secret stops the
job (or the compose stack) with one line saying how to make a real one."""

from __future__ import annotations

import pytest
import yaml

from jobs import clickstream_bronze
from jobs.common import config, secrets
from jobs.common.config import MissingSecret
from tests.unit.test_compose import REPO, compose

REAL = "k3y-" + "x" * 40


def test_the_demo_mode_allows_the_demo_key(monkeypatch):
    monkeypatch.setenv("PIPELINE_MODE", "demo")
    monkeypatch.delenv("PIPELINE_IP_HASH_KEY", raising=False)
    assert config.ip_hash_key() == config.DEMO_IP_HASH_KEY


@pytest.mark.parametrize(("value", "why"), [(None, "is not set"), ("change-me", "is a placeholder"),
                                            (config.DEMO_IP_HASH_KEY, "is a placeholder"),
                                            ("short", "is shorter than 32 characters")])
def test_outside_the_demo_mode_a_real_key_is_required(monkeypatch, value, why):
    monkeypatch.setenv("PIPELINE_MODE", "production")
    if value is None:
        monkeypatch.delenv("PIPELINE_IP_HASH_KEY", raising=False)
    else:
        monkeypatch.setenv("PIPELINE_IP_HASH_KEY", value)
    with pytest.raises(MissingSecret, match=f"PIPELINE_IP_HASH_KEY {why} .* generate one with python -c"):
        config.ip_hash_key()
    monkeypatch.setenv("PIPELINE_IP_HASH_KEY", REAL)
    assert config.ip_hash_key() == REAL


def test_the_bronze_job_refuses_before_spark_starts(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_MODE", "production")
    monkeypatch.delenv("PIPELINE_IP_HASH_KEY", raising=False)
    assert clickstream_bronze.main(["--date", "2026-11-20", "--lake-root", "file:///tmp/none"]) == 1
    assert "clickstream_bronze failed: PIPELINE_IP_HASH_KEY is not set" in capsys.readouterr().err


def test_the_deployment_check_lists_every_bad_secret(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_MODE", "production")
    for name in config.DEPLOYMENT_SECRETS:
        monkeypatch.setenv(name, REAL)
    assert secrets.main() == 0
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "change-me-long-random")  # .env.example's value
    monkeypatch.delenv("AIRFLOW__CORE__FERNET_KEY")
    assert secrets.main() == 1
    err = capsys.readouterr().err
    assert "AIRFLOW__API_AUTH__JWT_SECRET is a placeholder" in err and "AIRFLOW__CORE__FERNET_KEY is not set" in err


def test_the_env_example_ships_no_usable_secret(monkeypatch):
    values = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    monkeypatch.setenv("PIPELINE_MODE", values["PIPELINE_MODE"])
    for name in ("PIPELINE_IP_HASH_KEY", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, values[name])
        with pytest.raises(MissingSecret):
            config.secret(name)


def test_compose_checks_secrets_first_and_publishes_on_loopback_only():
    services = compose()["services"]
    assert services["airflow-init"]["command"].startswith('bash -c "python -m jobs.common.secrets &&')
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    env = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["x-airflow"]["environment"]
    assert env["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW_FERNET_KEY:?")
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?")
