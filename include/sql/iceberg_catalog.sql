-- The Iceberg JDBC catalog's own database (compose): Iceberg creates its tables in it on first use.
CREATE DATABASE iceberg;
