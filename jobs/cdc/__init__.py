"""OLTP tables -> bronze/cdc_snapshots, bronze/cdc_changes -> silver/<table>_current and _history (SCD2).

`settings.py` (cdc.yaml), `envelope.py` (Debezium parsing), `changelog.py` (raw -> change log),
`scd2.py` (the merge), `state.py` (silver state, snapshots), `snapshot.py` and `merge.py` (the jobs).
"""

#: reports/cdc/dt=D/run.json: what the night's merge did (the nightly DAG waits for it)
STAGE = "cdc"
