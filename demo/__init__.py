"""The demo data: a clickstream with planted experiment effects and a shop database captured as Debezium
events, written straight into raw/ (or produced to Kafka) in exactly the layout the pipeline's drain writes.

Outside `jobs/` on purpose: the pipeline never imports the demo; the demo uses the pipeline's contracts
(the raw landing format, the CDC settings). `python -m demo --help`.
"""
