"""The base of every configuration model: unknown settings are errors, and a loaded configuration never changes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A configuration model: `extra="forbid"` (a misspelt setting is an error, not ignored) and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
