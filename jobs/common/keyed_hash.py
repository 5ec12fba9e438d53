"""HMAC-SHA256 with Spark SQL functions, for pseudonymous ids (the IP in bronze, erased users' ids).

Spark has no HMAC, and `sha2(key || message)` is open to length extension; RFC 2104 needs only `sha2`,
`unhex` and concatenation of binary values. Equals Python's `hmac.new(key, message, sha256).hexdigest()`.
"""

from __future__ import annotations

import hashlib
import re

from pyspark.sql import Column
from pyspark.sql import functions as F

BLOCK = 64


def pads(key: str) -> tuple[bytes, bytes]:
    """HMAC-SHA256's inner and outer keys: the key, padded to the block, XOR 0x36 and 0x5c."""
    raw = key.encode()
    raw = hashlib.sha256(raw).digest() if len(raw) > BLOCK else raw
    raw = raw.ljust(BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in raw), bytes(b ^ 0x5C for b in raw)


def hmac_sha256(message: Column, key: str) -> Column:
    inner_pad, outer_pad = pads(key)
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), message.cast("binary")), 256))
    return F.sha2(F.concat(F.lit(outer_pad), inner), 256)


def redaction_pattern(key: str) -> str:
    """A `spark.sql.redaction.string.regex` that hides the key and the pads derived from it in plans and the UI."""
    return f"(?i)({'|'.join([re.escape(key), *(pad.hex() for pad in pads(key))])})"
