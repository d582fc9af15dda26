"""Test-side helpers for real ROS 2 processes: a distinct domain per test, localhost only."""
from __future__ import annotations

import itertools
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Domain ids 1..100, offset by the pid so concurrent test runs on one machine do not meet.
_domains = itertools.count(1 + (os.getpid() % 10) * 10)


def next_domain() -> int:
    return next(_domains) % 100 + 1
