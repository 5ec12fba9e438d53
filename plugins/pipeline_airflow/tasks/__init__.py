"""Task callables, one module per pipeline stage (as in `jobs/`): they read summaries and make decisions;
the work itself runs in `jobs/` (in-process for I/O like the Kafka drain, through spark-submit for Spark)."""
