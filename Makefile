.PHONY: demo test test-fast setup lint bench bench-nightly catalogue airflow
demo:   ## set up from nothing and run the nightly DAG on demo data (airflow dags test)
	bash scripts/pipeline.sh demo
airflow:   ## the web UI on the embedded settings and the demo lake (api-server, scheduler, dag-processor, triggerer)
	bash scripts/pipeline.sh airflow
test:   ## set up from nothing and run the whole test suite (what CI runs)
	bash scripts/pipeline.sh test
test-fast:   ## the quick tier for the inner loop: unit and DAG tests, no Spark, no services
	bash scripts/pipeline.sh test -m "unit or dags"
setup:
	bash scripts/pipeline.sh setup
lint: setup
	.venv/bin/ruff check .
catalogue: setup   ## regenerate the feature catalogue (docs/FEATURES.md, include/feature_names.json) from the registry
	.venv/bin/python -m jobs.features.catalogue
bench: setup   ## raw->bronze vs DuckDB, Kafka drain, A/B report at scale, ALS vs implicit, CDC merge vs DuckDB, a small day's and a small CDC night's cost, a small GX gate's fixed cost, the tests' session settings, the Iceberg change's fixed cost; figures in docs/BENCHMARKS.md
	. scripts/env.sh && python benchmarks/bronze_vs_duckdb.py && python benchmarks/kafka_drain_throughput.py \
	  && python benchmarks/ab_report_scale.py && python benchmarks/als_vs_implicit.py && python benchmarks/cdc_merge_scale.py \
	  && python benchmarks/small_day_overhead.py && python benchmarks/small_cdc_night.py \
	  && python benchmarks/gx_gate_fixed_cost.py && python benchmarks/suite_session_settings.py \
	  && python benchmarks/iceberg_fixed_cost.py
bench-nightly: setup   ## the nightly DAG end to end at 1 M and 10 M events/day, per task, local[*] vs a 2-worker cluster (~2 h)
	. scripts/env.sh && python benchmarks/nightly_end_to_end.py
