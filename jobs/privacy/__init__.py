"""Personal data: the erasure of a person from every table (`erasure.py`), the suppression list bronze leaves
out, and the retention of raw/ and quarantine (`retention.py`). Where the data lives: `privacy.yaml`."""

#: reports/privacy/dt=D/<kind>-<run>.json: what an erasure or a retention run removed
STAGE = "privacy"
