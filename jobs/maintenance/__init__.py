"""Iceberg table maintenance: compaction, snapshot expiry and orphan-file removal for every table of the catalog."""

JOB = "maintenance_tables"
