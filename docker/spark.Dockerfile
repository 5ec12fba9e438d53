# Spark worker image for the cluster mode: the official Spark image (same version as the pyspark
# pin) plus native BLAS for ALS and the Python packages that pandas-on-Arrow tasks need on the
# executors (the blockwise top-K in jobs/als/topk.py), at the project's pinned versions.
FROM apache/spark:4.1.3-scala2.13-java17-python3-ubuntu
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0 python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY constraints.txt /opt/pipeline/
RUN pip3 install --no-cache-dir numpy pandas pyarrow -c /opt/pipeline/constraints.txt
ENV OPENBLAS_NUM_THREADS=1
USER spark
