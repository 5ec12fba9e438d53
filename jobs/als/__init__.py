"""bronze/clickstream -> ALS embeddings: gold/als/id_map, models/als/versions/<version>, models/als/champion.json.

`settings.py` (als.yaml), `interactions.py` (weights, decay, ids, the data window), `model.py` (ALS),
`topk.py` (blockwise top-K), `evaluation.py` (holdout metrics, the champion), `registry.py` (versions,
promotion, cadence), `train.py` (the job).
"""

#: reports/als/dt=D/run.json: the night's decision (trained or skipped, promoted or not, and why)
STAGE = "als"
