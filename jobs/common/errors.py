"""What can go wrong in a job, and the exit code each failure leaves for Airflow and for people.

    0  published, or already up to date
    1  a failure: bad settings, missing input, an unreachable service, a crash (retrying may help)
    2  bad command-line arguments (argparse's usage error)
    3  the data was rejected by validation and nothing was published (retrying cannot help)
"""

from __future__ import annotations

OK = 0
FAILED = 1
BAD_ARGUMENTS = 2
VALIDATION_REJECTED = 3


class PipelineError(Exception):
    """A failure a job can name in one line (exit 1): the runner prints it without a traceback."""


class SettingsError(PipelineError, ValueError):
    """A settings file is unreadable or invalid; the message lists every problem."""


class MissingInput(PipelineError, FileNotFoundError):
    """An input the run needs is not in the lake (a partition, a raw directory, a report)."""
