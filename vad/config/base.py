"""The base of every config section."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys, NaN and infinities are errors at load time."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)



def shorthand(value: Any, field: str) -> Any:
    """A bare string stands for `{field: string}`: `store: sqlite:///vad.db` and
    `describer: detector` read as the full sections."""
    return {field: value} if isinstance(value, str) else value
