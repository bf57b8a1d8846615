"""The job the queue's ceiling is measured with: RQ's own cost per job and nothing else."""

from __future__ import annotations


def noop() -> None:
    return None
