"""Refuse to start a deployment with placeholder or missing secrets: `python -m jobs.common.secrets`.

docker-compose's `airflow-init` runs it before anything else; it prints one line per problem, each
saying how to generate the secret, and exits 1. The embedded demo (`PIPELINE_MODE=demo`) passes.
"""

from __future__ import annotations

import sys

from jobs.common import config


def main() -> int:
    problems = config.secret_problems()
    for problem in problems:
        print(f"refusing to start: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
