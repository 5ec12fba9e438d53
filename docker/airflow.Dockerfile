# Airflow 3 image for the cluster mode: the official image plus a JDK (spark-submit runs the
# driver here, client mode), the project's pinned requirements (pyspark == the cluster's Spark) and
# the pinned JVM jars of jvm/pom.xml (Iceberg, hadoop-aws, JDBC drivers), fetched at build time.
FROM maven:3.9.11-eclipse-temurin-17 AS jars
COPY jvm/ /build/jvm/
RUN mvn -q -B -C -f /build/jvm/pom.xml dependency:copy-dependencies -DexcludeTransitive=true \
      -DoutputDirectory=/jars \
 && cd /jars && sha256sum -c /build/jvm/jars.sha256

FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless libopenblas0 \
 && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
USER airflow
COPY --from=jars /jars /opt/pipeline-jars
ENV PIPELINE_JARS_DIR=/opt/pipeline-jars
COPY requirements.txt constraints.txt pyproject.toml /opt/pipeline/
RUN pip install --no-cache-dir -r /opt/pipeline/requirements.txt -c /opt/pipeline/constraints.txt
