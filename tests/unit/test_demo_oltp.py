"""The demo shop database: consistent with the clickstream ids, every event parses, bad records as planted."""

from __future__ import annotations

import collections
import datetime as dt
import json

from demo import cli as demo_cli
from jobs.cdc import envelope
from jobs.cdc import settings as cdc_settings
from jobs.common import storage
from jobs.common.paths import Lake

FIRST = dt.date(2026, 11, 19)
ARGS = ["--start-date", "2026-11-19", "--days", "2", "--events-per-day", "500", "--users", "800", "--items", "120",
        "--oltp-from", "2026-11-19"]


def generated(tmp_path, name: str) -> tuple[Lake, dict[str, bytes]]:
    lake = Lake((tmp_path / name).as_uri())
    assert demo_cli.main([*ARGS, "--lake-root", lake.root]) == 0
    files = storage.list_files(f"{lake.root}/raw")
    return lake, {f.removeprefix(lake.root): storage.read_bytes(f) for f in files if "clickstream" not in f}


def test_shop_matches_the_clickstream_ids_parses_and_carries_each_bad_record(tmp_path):
    lake, files = generated(tmp_path, "a")
    assert generated(tmp_path, "b")[1] == files  # same seed, same bytes
    dump = lake.export_dir(f"oltp-{FIRST}")
    users = [json.loads(line) for line in storage.read_bytes(f"{dump}/users.json").splitlines()]
    assert [u["user_id"] for u in users] == [f"u{i:07d}" for i in range(800)]  # every clickstream user
    items = [json.loads(line) for line in storage.read_bytes(f"{dump}/items.json").splitlines()]
    assert [i["item_id"] for i in items] == [f"i{n:06d}" for n in range(120)]
    watermark = json.loads(storage.read_bytes(f"{dump}/_watermark.json"))
    assert watermark["rows"]["users"] == 800 and watermark["taken_at"] == "2026-11-19T00:00:00.000000Z"

    cdc = cdc_settings.load()
    kinds, ops, positions, deletes = collections.Counter(), collections.Counter(), [], set()
    values = collections.Counter()
    for path, body in files.items():
        if "/cdc." not in path:
            continue
        for line in body.splitlines():
            record = json.loads(line)
            values[record["value"]] += 1
            change = envelope.parse(record["value"], cdc, record["key"], record["topic"])
            kinds[change.reason.split(":")[0] if change.reason else change.kind] += 1
            if change.kind == "change":
                ops[change.op] += 1
                positions.append(change.pos[0])
                deletes |= {tuple(change.pos)} if change.op == "d" else set()
    days = 2
    assert kinds["unknown_op"] == kinds["missing_primary_key"] == kinds["malformed_json"] == days
    assert kinds["no_primary_key_configured"] == days  # public.audit_log, captured but not configured
    assert kinds["tombstone"] == len(deletes) + days  # one per delete (not per re-delivery), one stray a day
    assert sum(n - 1 for v, n in values.items() if v is not None) >= days  # re-deliveries: 1+ per busy topic a day
    assert ops["c"] > 0 and ops["u"] > 0 and ops["d"] > 0 and min(positions) > watermark["lsn"]
