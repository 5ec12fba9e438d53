"""Airflow-side helpers for the pipeline's DAGs: run-date resolution and task factories.

No business logic lives here: tasks call into `jobs/` (in-process for the Kafka drain,
through spark-submit for Spark jobs) with the date, paths and options as arguments.
"""
