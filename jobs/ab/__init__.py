"""bronze/clickstream -> A/B reports: gold/ab/counts, gold/ab/history, reports/ab/dt=D/report.{json,html}.

`registry.py` (experiments.yaml), `aggregation.py` (Spark sums), `counts.py` (the interchange format),
`stats.py` and `analysis.py` (the statistics, no Spark), `render.py` (HTML), `outputs.py` (publish),
`report.py` (the job), `cli.py` (counts file -> report), `s3_publish.py` (lake -> bucket).
"""

#: reports/ab/dt=D/: report.json and report.html
STAGE = "ab"
