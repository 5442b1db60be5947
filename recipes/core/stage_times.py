"""How long each main-job stage took on this machine, so the next run's stage banner can say what to expect.

The record lives in ``$FORGE_CACHE`` (default ``~/.cache/forge``)/``stage_times.json``, keyed by budget,
preset, data folder and stage, with the load average and core count at the time. The expectation for a
stage scales the last duration by how much busier the machine is now: on a 2-core machine, a load
average of 6 makes everything about 3x slower than on an idle one. Without a record, the banner says so
and points at the progress bar's time-left figure, which is measured on the spot.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

__all__ = ["StageTimes", "load_factor"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_factor(load: Optional[float] = None, cores: Optional[int] = None) -> float:
    """How many times slower than idle a CPU-bound job runs now: runnable tasks per core, at least 1."""
    cores = cores or _cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return 1.0
    return max(1.0, (load + 1.0) / cores)  # +1: this job itself joins the queue


def _store() -> Path:
    return Path(os.environ.get("FORGE_CACHE") or Path.home() / ".cache" / "forge") / "stage_times.json"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


@dataclass
class StageTimes:
    """The stage durations of one kind of main-job run (budget, preset, data) on this machine."""

    key: str
    path: Path = field(default_factory=_store)

    @classmethod
    def for_job(cls, budget: str, preset: str, data_dir: str | os.PathLike) -> "StageTimes":
        return cls(key=f"{budget}|{preset}|{Path(data_dir).resolve()}")

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def expectation(self, stage: str) -> str:
        """One line for the stage banner."""
        cores = _cores()
        now = load_factor(cores=cores)
        try:
            load_now = f"load average {os.getloadavg()[0]:.1f} on {cores} cores"
        except (AttributeError, OSError):
            load_now = f"{cores} cores"
        last = self._read().get(self.key, {}).get(stage)
        if not last:
            return (f"expected: no earlier run of this stage on this machine ({load_now}); the progress bar shows "
                    "the time left once the first steps are done")
        then = load_factor(last.get("load"), last.get("cores") or cores)
        expected = last["seconds"] * now / then
        return (f"expected: about {_minutes(expected)} on this machine ({load_now}; the last run took "
                f"{_minutes(last['seconds'])} at load average {last.get('load', 0):.1f})")

    def record(self, stage: str, seconds: float) -> None:
        """Remember this stage's duration (best effort: a read-only home only loses the estimate)."""
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = None
        data = self._read()
        data.setdefault(self.key, {})[stage] = {"seconds": round(seconds, 1), "load": load, "cores": _cores()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass
