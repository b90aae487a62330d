"""The configuration of the `memory` connector."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.types import Duration

STREAM_ONLY = ("lanes", "starting_position")
QUEUE_ONLY = ("redelivery_delay",)


class MemoryConfig(BaseModel):
    """Read a named stream or queue of this process: records put into it with `connectors.memory.put` (tests, and
    trying a configuration without a broker). Nothing survives the process but the stream checkpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["memory"]
    name: str = Field(
        min_length=1,
        description="The channel: every source of this process on the same name reads what is put under it.",
    )
    mode: Literal["stream", "queue"] = Field(
        "stream",
        description="`stream`: ordered lanes whose positions are checkpointed in the hub's store; a failed batch "
        "blocks its lane and is read again (the stream policy, as for Kinesis). `queue`: one unordered lane; settled "
        "records are deleted and failed ones delivered again (the queue policy, as for SQS).",
    )
    lanes: int = Field(
        1,
        ge=1,
        le=100,
        description="stream: how many ordered lanes (partitions) it has; a record goes to the lane of its key, "
        "else round-robin.",
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        "TRIM_HORIZON",
        description="stream: where a lane without a checkpoint starts: its first record, or only what comes next.",
    )
    redelivery_delay: Duration = Field(
        0.0, ge=0, le=3600, description="queue: how long a failed record waits before it is delivered again."
    )
    records: list[Any] = Field(
        default_factory=list,
        description="Records put into the channel when this process creates it (its first source opens): each is "
        "a record's `data`, any JSON value. A stream spreads them round-robin over its lanes, the same way at every "
        "start, so that its checkpoints still name them after a restart.",
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> MemoryConfig:
        others = QUEUE_ONLY if self.mode == "stream" else STREAM_ONLY
        for name in others:
            if name in self.model_fields_set:
                raise ValueError(f"{name}: not used with mode {self.mode}")
        return self
