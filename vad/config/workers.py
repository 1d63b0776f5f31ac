"""Worker processes: `vad run` spreads its cameras and `vad serve` its consumer-group members
over the CPU cores (docs/scaling.md)."""

from __future__ import annotations

from pydantic import Field

from vad.config.base import Section


class WorkersConfig(Section):
    """How many processes score, and how many threads each one uses."""

    processes: int | None = Field(None, ge=1, description=(
        "worker processes; none = `vad run`: one per CPU core this process may use, at most "
        "one per camera (one runs in the calling process); `vad serve`: one consumer-group "
        "member (its orchestrator sees its crashes), `--workers N` for N"))
    threads: int = Field(1, ge=1, description=(
        "torch and OpenCV threads of each worker process when there are several: one each "
        "keeps the processes from contending for the cores"))
