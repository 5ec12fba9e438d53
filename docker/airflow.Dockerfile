# Airflow 3 image for the cluster mode: the official image plus a JDK (spark-submit runs the
# driver here, client mode) and the project's pinned requirements (pyspark == the cluster's Spark).
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless libopenblas0 \
 && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
USER airflow
COPY requirements.txt constraints.txt pyproject.toml /opt/pipeline/
RUN pip install --no-cache-dir -r /opt/pipeline/requirements.txt -c /opt/pipeline/constraints.txt
