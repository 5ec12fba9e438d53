.PHONY: demo test setup lint bench
demo:   ## set up from nothing and run the nightly DAG on demo data (airflow dags test)
	bash scripts/pipeline.sh demo
test:   ## set up from nothing and run the whole test suite
	bash scripts/pipeline.sh test
setup:
	bash scripts/pipeline.sh setup
lint: setup
	.venv/bin/ruff check .
bench: setup
	. scripts/env.sh && python benchmarks/bronze_vs_duckdb.py
