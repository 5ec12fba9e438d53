"""Kafka -> raw/: the immutable landing zone's format (`raw_zone.py`) and the bounded drain that fills it
(`kafka.py`). Pure Python (confluent-kafka, pyarrow), no Spark."""
