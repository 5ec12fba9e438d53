"""The one way every job runs from the command line (spark-submit, `python -m`, or a test calling `main`).

A job's `main(argv)` declares its own arguments and hands a body to `Job.main`, which does the rest:

* the standard arguments: `--date` (and `--end-date` for backfills in one session), `--lake-root`,
  and `--help` from the entry point's docstring;
* logging set up once, the run id minted once (`Context.run_id`), the Spark session created on
  first use and always stopped;
* the body yields one `Outcome` per unit of work (a day, a table): each is printed as JSON;
* exit codes (`jobs/common/errors.py`): a named failure (`PipelineError`) or a failed input or
  value becomes one line `<job> failed: <what>` on stderr and exit 1; bad arguments exit 2 with
  argparse's usage line; an outcome rejected by validation prints its one line and exits 3.

Importable without pyspark: non-Spark jobs (the Kafka drain, the A/B CLI) use it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from jobs.common import config
from jobs.common.errors import FAILED, OK, VALIDATION_REJECTED, PipelineError
from jobs.common.paths import Lake, date_arg, date_range

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("jobs.runner")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def new_run_id() -> str:
    """A run id that sorts by start time and never repeats: `20261120T020512-1a2b3c4d`."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Outcome:
    """What one unit of a job's work reports: a JSON record, lines for people, and a rejection if any."""

    record: dict[str, Any]
    lines: tuple[str, ...] = ()
    #: why validation rejected the data, in one line (then nothing was published: exit 3)
    rejected: str | None = None


@dataclass
class Context:
    """What a job's body gets: its parsed arguments, the lake, the days, the run id and the Spark session."""

    name: str
    args: argparse.Namespace
    parser: argparse.ArgumentParser
    run_id: str = field(default_factory=new_run_id)
    _spark: SparkSession | None = None

    @functools.cached_property
    def lake(self) -> Lake:
        return Lake(self.args.lake_root)

    @functools.cached_property
    def days(self) -> list[dt.date]:
        """`--date` .. `--end-date` (just `--date` without it), in order."""
        return date_range(self.args.date, getattr(self.args, "end_date", None))

    @property
    def spark(self) -> SparkSession:
        """The job's Spark session, created on first use (argument and settings checks come before it)."""
        if self._spark is None:
            from jobs.common.spark import get_spark

            day = getattr(self.args, "date", None)
            self._spark = get_spark(f"{self.name}:{day}" if day else self.name)
        return self._spark

    def usage_error(self, message: str) -> NoReturn:
        """A bad combination of arguments: argparse's usage line and exit 2."""
        self.parser.error(message)

    def stop(self) -> None:
        if self._spark is not None:
            self._spark.stop()
            self._spark = None


Body = Callable[[Context], Iterable[Outcome]]


def each_day(run_day: Callable[[Context, dt.date], Outcome]) -> Body:
    """A body that runs `run_day` for every date from `--date` to `--end-date`, in order."""
    def body(ctx: Context) -> Iterator[Outcome]:
        for day in ctx.days:
            yield run_day(ctx, day)
    return body


class Job:
    """A command-line job: `Job(name, __doc__, ...)`, its own arguments via `argument`, then `main(argv, body)`."""

    def __init__(self, name: str, doc: str | None, *, dates: Literal["range", "day", "none"] = "range",
                 lake: bool = True, stop_on_rejection: bool = False) -> None:
        self.name = name
        self.stop_on_rejection = stop_on_rejection
        self.parser = argparse.ArgumentParser(prog=name, description=doc,
                                              formatter_class=argparse.RawDescriptionHelpFormatter)
        if dates != "none":
            self.parser.add_argument("--date", required=True, type=date_arg, help="the date (UTC) to run, YYYY-MM-DD")
        if dates == "range":
            self.parser.add_argument("--end-date", type=date_arg,
                                     help="backfill: every date from --date to this one, in order, in one session")
        if lake:
            self.parser.add_argument("--lake-root", default=config.lake_root(),
                                     help="lake root URI (default: %(default)s)")

    def argument(self, *flags: str, **options: Any) -> None:
        self.parser.add_argument(*flags, **options)

    def main(self, argv: list[str] | None, body: Body) -> int:
        args = self.parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        ctx = Context(self.name, args, self.parser)
        try:
            if hasattr(args, "date"):
                ctx.days  # noqa: B018 (checks --end-date >= --date before anything runs)
            if hasattr(args, "lake_root"):
                ctx.lake  # noqa: B018 (checks the root is a URI)
        except ValueError as exc:
            ctx.usage_error(str(exc))
        return self._run(ctx, body)

    def _run(self, ctx: Context, body: Body) -> int:
        code = OK
        try:
            for outcome in body(ctx):
                print(json.dumps(outcome.record, indent=2, default=str))
                for line in outcome.lines:
                    print(line)
                if outcome.rejected:
                    self.fail(outcome.rejected)
                    code = VALIDATION_REJECTED
                    if self.stop_on_rejection:
                        break
        except PipelineError as exc:
            return self.fail(exc)
        except (ValueError, OSError, ArithmeticError) as exc:
            log.error("%s: %s", self.name, type(exc).__name__, exc_info=True)
            return self.fail(exc)
        finally:
            ctx.stop()
        return code

    def fail(self, what: object) -> int:
        """The one line a failed job leaves on stderr (Airflow shows it at the end of the task log)."""
        print(f"{self.name} failed: {what}", file=sys.stderr, flush=True)
        return FAILED
