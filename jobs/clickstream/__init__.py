"""raw/clickstream -> bronze/clickstream/dt=D (and quarantine/clickstream/dt=D): the record rules
(`transforms.py`) and the job that applies them, validates with GX and publishes (`bronze.py`)."""
