"""Live control of a running hub's mappings, with AWS's event source mapping states.

Each mapping the hub knows is a `Slot`: its configuration, its state and, while it is enabled, the runner that
reads it. A state is one of AWS's: `Creating`, `Enabling`, `Enabled`, `Disabling`, `Disabled`, `Updating`,
`Deleting`. `StateTransitionReason` says who asked (`USER_INITIATED` from the admin API or the CLI, `CONFIG_RELOAD`
from SIGHUP or `hub reload`, `CONFIG` at start).

- **Disable** stops the runner as a hub stop does (reading ends, in-flight batches get `shutdown_grace`, what
  settled is checkpointed) and keeps the checkpoint: **enable** starts a new runner that goes on from it.
- **Update** validates the new settings first (a bad value changes nothing), then stops the runner and starts one
  with the new configuration: nothing settled is read again, nothing unsettled is lost.
- Operations on one hub are done one at a time (a lock), so states never interleave.

`Mappings` does not know how runners are made: the hub hands it `build` (a mapping's configuration to a runner
and the destination to close after it) and the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hub.config import MappingConfig
from hub.dispatch import Counters
from hub.logs import fields

log = logging.getLogger("hub.control")

State = Literal["Creating", "Enabling", "Enabled", "Disabling", "Disabled", "Updating", "Deleting"]
UPDATABLE = frozenset(
    {
        "enabled",
        "batch_size",
        "maximum_batching_window",
        "filter_criteria",
        "maximum_retry_attempts",
        "maximum_record_age",
        "maximum_event_age",
        "bisect_batch_on_function_error",
        "function_response_types",
        "destination_config",
        "max_concurrency",
        "parallelization_factor",
        "tumbling_window",
        "retry_delay",
        "maximum_retry_delay",
        "function",
    }
)
"""What `update` may change: the mapping's settings, as AWS's UpdateEventSourceMapping does; not its source."""


class Runner(Protocol):
    """A mapping being read (hub.mapping.MappingRunner)."""

    name: str
    counters: Counters

    async def run(self) -> None:
        """Run the mapping until stop()."""

    async def stop(self, grace: float) -> None:
        """Stop reading; let batches in flight finish within `grace` seconds."""


class Closable(Protocol):
    """What a mapping owns besides its runner and closes when it stops (its on-failure destination)."""

    async def close(self) -> None:
        """Release its clients."""


class ControlError(Exception):
    """A request the hub refuses: `status` is the HTTP status the admin API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(eq=False)
class Slot:
    """One mapping: its configuration, its AWS state, and its runner while enabled."""

    config: MappingConfig
    state: State = "Creating"
    reason: str = "CONFIG"
    counters: Counters = field(default_factory=Counters)
    runner: Any = None
    task: asyncio.Task[None] | None = None
    destination: Closable | None = None
    since: float | None = None
    """When (epoch seconds) the current runner started: unchanged while the mapping runs untouched."""

    @property
    def name(self) -> str:
        """The mapping's name."""
        return self.config.display_name


Build = Callable[[MappingConfig, Counters], Awaitable[tuple[Runner, Closable | None]]]


class Mappings:
    """Every mapping of a hub as a Slot, started, stopped and changed at run time."""

    def __init__(self, build: Build, grace: float) -> None:
        self.build = build
        self.grace = grace
        self.slots: dict[str, Slot] = {}
        self.served: set[str] = set()
        """Names of the sync mappings (`http`), which the hub serves outside of these slots."""
        self.lock = asyncio.Lock()

    @property
    def runners(self) -> list[Any]:
        """The runners of enabled mappings, in configuration order."""
        return [slot.runner for slot in self.slots.values() if slot.runner is not None]

    def get(self, name: str) -> Slot:
        """The mapping of this name; ControlError (404) when there is none, or when it is an http route, which has no
        state to change."""
        slot = self.slots.get(name)
        if slot is None:
            if name in self.served:
                raise ControlError(
                    f"{name} is an http route: a server serves it rather than a poller reading it, so it has no "
                    "state to change; edit the configuration and reload it (`hub reload`)",
                    409,
                )
            known = ", ".join(self.slots) or "none"
            raise ControlError(f"no mapping named {name!r} (mappings: {known})", 404)
        return slot

    # ---- the operations ----------------------------------------------------------------------------------------

    async def add(
        self, config: MappingConfig, reason: str = "CONFIG", counters: Counters | None = None, *, launch: bool = True
    ) -> Slot:
        """A new mapping: Creating, then Enabled (its runner built and started) or Disabled. With `launch` False
        the runner is built but stays in Creating until `launch()` (the hub's start, before it runs)."""
        slot = Slot(config, "Creating", reason, counters or Counters())
        self.slots[slot.name] = slot
        if not config.enabled:
            self._set(slot, "Disabled", reason)
        elif launch:
            await self._start(slot, "Enabled")
        else:
            await self._build(slot)
        return slot

    def launch(self) -> None:
        """Start the runners `add(..., launch=False)` built."""
        for slot in self.slots.values():
            if slot.runner is not None and slot.task is None:
                slot.task = asyncio.create_task(slot.runner.run(), name=slot.name)
                slot.since = time.time()
                self._set(slot, "Enabled", slot.reason)

    async def enable(self, name: str, reason: str = "USER_INITIATED") -> Slot:
        """Start a disabled mapping again from its checkpoints (Enabling, then Enabled); an enabled one is left as it
        is."""
        async with self.lock:
            slot = self.get(name)
            if slot.state == "Enabled":
                return slot
            slot.config = slot.config.model_copy(update={"enabled": True})
            self._set(slot, "Enabling", reason)
            await self._start(slot, "Enabled")
            return slot

    async def disable(self, name: str, reason: str = "USER_INITIATED") -> Slot:
        """Stop a mapping gracefully and keep its checkpoints (Disabling, then Disabled); a disabled one is left as
        it is."""
        async with self.lock:
            slot = self.get(name)
            if slot.state == "Disabled":
                return slot
            slot.config = slot.config.model_copy(update={"enabled": False})
            self._set(slot, "Disabling", reason)
            await self._stop(slot)
            self._set(slot, "Disabled", reason)
            return slot

    async def update(self, name: str, changes: Mapping[str, Any], reason: str = "USER_INITIATED") -> Slot:
        """Validate `changes` against the mapping's configuration, then apply them (restarting its runner)."""
        async with self.lock:
            slot = self.get(name)
            unknown = sorted(set(changes) - UPDATABLE)
            if unknown:
                raise ControlError(
                    f"cannot change {', '.join(unknown)} at run time (a mapping's source is fixed, as on AWS); "
                    f"settings that can change: {', '.join(sorted(UPDATABLE))}"
                )
            new = revalidate(slot.config, changes)
            await self._replace(slot, new, reason)
            return slot

    async def replace(self, config: MappingConfig, reason: str = "CONFIG_RELOAD") -> Slot:
        """Run `config` in place of the mapping of the same name (a reloaded configuration)."""
        async with self.lock:
            return await self._replace(self.get(config.display_name), config, reason)

    async def delete(self, name: str, reason: str = "CONFIG_RELOAD") -> None:
        """Stop a mapping and forget it (a reload that no longer has it); its checkpoints stay in the store."""
        async with self.lock:
            slot = self.get(name)
            self._set(slot, "Deleting", reason)
            await self._stop(slot)
            del self.slots[name]
            log.info("mapping deleted", extra=fields(mapping=name, reason=reason))

    async def stop_all(self, grace: float) -> None:
        """Stop every runner (the hub is stopping): in parallel, each with `grace`."""
        await asyncio.gather(*(self._stop(slot, grace) for slot in self.slots.values()))

    # ---- inside ----------------------------------------------------------------------------------------------

    async def _replace(self, slot: Slot, config: MappingConfig, reason: str) -> Slot:
        self._set(slot, "Updating", reason)
        await self._stop(slot)
        slot.config = config
        if config.enabled:
            await self._start(slot, "Enabled")
        else:
            self._set(slot, "Disabled", reason)
        return slot

    async def _build(self, slot: Slot) -> None:
        try:
            slot.runner, slot.destination = await self.build(slot.config, slot.counters)
        except Exception as exc:
            self._set(slot, "Disabled", f"start failed: {type(exc).__name__}: {exc}")
            raise ControlError(f"mapping {slot.name} could not start: {exc}", 500) from exc

    async def _start(self, slot: Slot, state: State) -> None:
        await self._build(slot)
        slot.task = asyncio.create_task(slot.runner.run(), name=slot.name)
        slot.since = time.time()
        self._set(slot, state, slot.reason)

    async def _stop(self, slot: Slot, grace: float | None = None) -> None:
        runner, task, destination = slot.runner, slot.task, slot.destination
        if runner is None:
            return
        await runner.stop(self.grace if grace is None else grace)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if destination is not None:
            try:
                await destination.close()
            except Exception as exc:
                log.warning("closing the destination failed: %s", exc, extra=fields(mapping=slot.name))
        slot.runner = slot.task = slot.destination = None
        slot.since = None

    def _set(self, slot: Slot, state: State, reason: str) -> None:
        if slot.state != state:
            log.info("mapping %s", state, extra=fields(mapping=slot.name, state=state, reason=reason))
        slot.state, slot.reason = state, reason


def revalidate(config: MappingConfig, changes: Mapping[str, Any]) -> MappingConfig:
    """`config` with `changes`, validated as the loader validates a mapping (ControlError naming the field)."""
    from pydantic import ValidationError

    data = config.model_dump(exclude_unset=True)
    data["source"] = config.source
    data.update(changes)
    try:
        return type(config).model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'mapping'}: {e['msg']}" for e in exc.errors())
        raise ControlError(f"not applied: {problems}") from None
