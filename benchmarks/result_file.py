"""Shared by the benchmark scripts: where results go and how the device is named."""
from __future__ import annotations

import json
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def result_path(benchmark: str, device: str, out: Path | None = None) -> Path:
    """`out`, or results/<benchmark>-<device>.json."""
    return out or RESULTS / f"{benchmark}-{re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-')}.json"


def write_result(report: dict, benchmark: str, device: str, out: Path | None = None) -> Path:
    """Print the report as JSON and write it to `out` or results/<benchmark>-<device>.json."""
    out = result_path(benchmark, device, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Paths inside the repository are written relative to it: a result says nothing about the machine's folders.
    text = json.dumps(report, indent=2).replace(str(REPO) + "/", "")
    out.write_text(text + "\n")
    print(text)
    return out
