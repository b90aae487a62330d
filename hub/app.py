"""The hub process: builds functions, destinations, sources and mappings from a HubConfig and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from hub import redact, reload
from hub.checkpoints import CheckpointStore, open_store, redacted
from hub.clock import Clock, SystemClock
from hub.config import ConfigError, HubConfig, MappingConfig
from hub.control import ControlError, Mappings, Slot
from hub.destinations import build_destination
from hub.dispatch import Counters, Dispatcher
from hub.exclusive import FencedStore, LeasedSource
from hub.functions import Function
from hub.health import Health
from hub.leases import Coordinator, Leases, LocalLeases, leases_for
from hub.logs import fields, flush_repeats
from hub.mapping import MappingRunner
from hub.reload import Changes, check_function
from hub.source import Destination, Source, SourceContext
from hub.sync import Rerouted, Serving, SyncMapping, SyncRunner

if TYPE_CHECKING:
    from hub.history import Monitor
    from hub.pollers import Pollers
    from hub.s3endpoint.server import S3Endpoint

log = logging.getLogger("hub")


class Hub:
    """Every enabled mapping of a HubConfig, in this process.

    only     run just the mapping of this name (a poller process of that mapping: no admin endpoint)
    poller   which poller of that mapping this process is (1: the hub itself), told to its source
    pollers  the extra poller processes of mappings with several pollers, started once this process runs
             and stopped with it
    """

    def __init__(
        self,
        config: HubConfig,
        *,
        clock: Clock | None = None,
        store: CheckpointStore | None = None,
        only: str | None = None,
        poller: int = 1,
        pollers: Pollers | None = None,
        loader: Callable[[], HubConfig] | None = None,
    ):
        redact.remember(redact.secrets_of(config))  # also when the hub is embedded, not started by `hub run`
        self.config = config
        self.only = only
        self.poller = poller
        self.pollers = pollers
        self.clock = clock or SystemClock()
        self.store = store or open_store(config.checkpoints)
        self.functions: dict[str, Function] = {}
        self.mappings = Mappings(self._build_runner, config.shutdown_grace)
        """Every mapping but the sync ones (`http`), with its AWS state; changed at run time (hub.control)."""
        self.serving = Serving(self._serve)
        """The sync mappings (`http`) and their servers."""
        self.loader = loader
        """Loads the configuration file again (validated; raises ConfigError): what `reload` applies."""
        self._reloading = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.counters: dict[str, Counters] = {}
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self.s3_endpoint: S3Endpoint | None = None
        self.cluster_health = Health("cluster")
        """The lease store as this hub sees it (a shared store that does not answer degrades it)."""
        self.leases: Leases = LocalLeases()
        self.monitor: Monitor | None = None
        """Lag, last minute and history of each mapping (hub.history), while the admin endpoint is on."""
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        """Load every function and build every enabled mapping. Raises on a function that cannot load."""
        await self._start_s3_endpoint()
        mappings = [m for m in self.config.mappings if self.only is None or m.display_name == self.only]
        used = {m.function for m in mappings if m.enabled}
        self._stack.push_async_callback(self._close_functions)
        for name in self.config.functions:
            function = Function.from_config(name, self.config, self.function_environment())
            self.functions[name] = function
            if name in used:
                await function.start()
        leased = [m.display_name for m in mappings if m.enabled and m.leases is not None]
        self.leases = leases_for(self.store, leased, self.config.cluster.failover_time, self.cluster_health)
        if isinstance(self.leases, Coordinator):
            await self.leases.start()
            self._stack.push_async_callback(self.leases.stop)
            log.info("joined the cluster", extra=fields(member=self.leases.member, leased_mappings=len(leased)))
        served: list[SyncMapping] = []
        for mapping in mappings:
            if mapping.spec.family == "sync":
                if mapping.enabled:
                    served.append(self._serve(mapping, self.functions[mapping.function]))
                self.mappings.served.add(mapping.display_name)
                continue
            counters = self.counters.setdefault(mapping.display_name, Counters())
            await self.mappings.add(mapping, counters=counters, launch=False)
        # listening before `hub running` is logged; stopped by the runners' stop (requests in flight finish within
        # shutdown_grace), and by close at the latest (with those a reload started)
        self._stack.push_async_callback(self.serving.close)
        await self.serving.start(self.config, served)

    async def _close_functions(self) -> None:
        """Close every function that was started (at start, or later by a mapping enabled at run time)."""
        for function in self.functions.values():
            if function.started:
                await function.close()

    @property
    def runners(self) -> list[MappingRunner | SyncRunner]:
        """What reads or serves each enabled mapping now: /status, /metrics and /healthz show these."""
        return [*self.mappings.runners, *self.serving.runners]

    def _serve(self, mapping: MappingConfig, function: Function) -> SyncMapping:
        """An enabled sync mapping, served with `function`."""
        counters = self.counters.setdefault(mapping.display_name, Counters())
        return SyncMapping(mapping, self._build_source(mapping, self._context(mapping)), function, counters)

    async def reroute(self, config: HubConfig, function_of: Callable[[str], Function]) -> Rerouted | None:
        """Serve the sync mappings of `config` (a reload; hub.sync.Serving.reroute), each function started."""

        async def started(name: str) -> Function:
            function = function_of(name)
            if not function.started:
                await function.start()
            return function

        wanted = [m for m in config.mappings if m.spec.family == "sync" and m.enabled and self.only is None]
        rerouted = await self.serving.reroute(config, wanted, started)
        if rerouted is not None:
            self.mappings.served = {m.display_name for m in config.mappings if m.spec.family == "sync"}
        return rerouted

    def _context(self, mapping: MappingConfig) -> SourceContext:
        spec = mapping.spec
        return SourceContext(
            mapping=mapping.display_name,
            store=self.store,
            region=self.config.region,
            account_id=self.config.account_id,
            clock=self.clock,
            log=logging.getLogger(f"hub.source.{spec.type}"),
            max_in_flight=int(mapping.setting("max_concurrency") or 1),
            health=Health(mapping.display_name),
            leases=self.leases,
            poller=self.poller,
            retry_delay=mapping.retry_delay,
            maximum_retry_delay=mapping.maximum_retry_delay,
        )

    async def _build_runner(
        self, mapping: MappingConfig, counters: Counters
    ) -> tuple[MappingRunner, Destination | None]:
        """A runner for an enabled mapping (not started), and its destination (closed after the runner stops)."""
        function = self.functions[mapping.function]
        if not function.started:
            await function.start()
        context = self._context(mapping)
        source = self._build_source(mapping, context)
        destination = build_destination(mapping.destination_config.on_failure, self.config.region)
        dispatcher = Dispatcher(mapping, function, source, destination, self.clock, asyncio.Event(), counters)
        runner = MappingRunner(
            mapping, source, dispatcher, counters, max_in_flight=context.max_in_flight, health=context.health
        )
        return runner, destination

    def _build_source(self, mapping: MappingConfig, context: SourceContext) -> Source:
        """The mapping's source; with a shared store, one whose whole work is one unit runs under a lease."""
        spec = mapping.spec
        if mapping.leases != "source" or not isinstance(self.leases, Coordinator):
            return spec.build(mapping.source, context)
        fenced = FencedStore(self.store)
        context.store = fenced
        name = context.scope("source")
        return LeasedSource(spec.build(mapping.source, context), fenced, self.leases, mapping.display_name, name)

    async def _start_s3_endpoint(self) -> None:
        """Serve the folders as S3 buckets before any function starts, so that its URL can be handed to them."""
        buckets = self.config.s3_buckets()
        if not buckets:
            return
        from hub.s3endpoint.server import S3Endpoint

        settings = self.config.s3_endpoint
        secret = settings.secret_access_key
        endpoint = S3Endpoint(
            buckets,
            access_key_id=settings.access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            region=self.config.region,
            also_accept=self._role_credentials(),
        )
        redact.remember([endpoint.secret_access_key])  # a random one when none is configured
        host, _, port = settings.listen.rpartition(":")
        # a poller process serves its own copy on any free port: the configured one belongs to the main process
        await endpoint.start(host, 0 if self.only is not None else int(port))
        self._stack.push_async_callback(endpoint.close)
        self.s3_endpoint = endpoint
        log.info("s3 endpoint", extra=fields(url=endpoint.url, buckets=",".join(sorted(buckets))))

    def _role_credentials(self) -> dict[str, str]:
        """{access key id: secret} of every execution role the configuration hands to functions."""
        config = self.config
        pairs = {}
        for aws in (config.function_defaults.aws, *(f.aws for f in config.functions.values())):
            key = aws.access_key_id or config.function_defaults.aws.access_key_id
            secret = aws.secret_access_key or config.function_defaults.aws.secret_access_key
            if key is not None and secret is not None:
                pairs[key.get_secret_value()] = secret.get_secret_value()
        return pairs

    def function_environment(self) -> dict[str, str]:
        """What functions need, on top of their own `environment`, to reach the hub's S3 endpoint with boto3
        unchanged: `AWS_ENDPOINT_URL_S3` and credentials the endpoint accepts (Lambda's own credential variables;
        a function given an execution role in `aws:` keeps its own, which the endpoint accepts too). Empty when
        the endpoint is off. Valid once `start()` has begun; a secret: never log it."""
        endpoint = self.s3_endpoint
        if endpoint is None:
            return {}
        return {
            "AWS_ENDPOINT_URL_S3": endpoint.url,
            "AWS_ACCESS_KEY_ID": endpoint.access_key_id,
            "AWS_SECRET_ACCESS_KEY": endpoint.secret_access_key,
        }

    async def run(self, *, install_signals: bool = True) -> None:
        """Run until SIGINT/SIGTERM (or stop()), then stop gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        # The hub makes many short-lived objects per record (records, events, results): the default thresholds
        # run the cyclic collector thousands of times a second. Start-up objects are frozen out of its view, and
        # young collections run every 50k allocations (measured: Kafka 118k -> 218k records/s).
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self.mappings.launch()
        tasks = [asyncio.create_task(runner.run(), name=runner.name) for runner in self.serving.runners]
        if self.config.admin is not None and self.only is None:
            from hub import admin

            host, _, port = self.config.admin.listen.rpartition(":")
            self._start_monitor()
            admin_runner = await admin.serve(self, host, int(port))
            self._stack.push_async_callback(admin_runner.cleanup)
            bound = admin_runner.addresses[0] if admin_runner.addresses else (host, port)  # port 0: the one taken
            log.info("admin endpoint", extra=fields(url=f"http://{host}:{bound[1]}/status"))
        grace = self.config.shutdown_grace
        try:
            if self.pollers is not None:
                await self.pollers.start()
            log.info(
                "hub running",
                extra=fields(
                    mappings=len(self.runners),
                    functions=len(self.functions),
                    checkpoints=redacted(self.config.checkpoints),
                ),
            )
            await self.stopping.wait()
            log.info("stopping: finishing in-flight work", extra=fields(grace_s=grace))
            stopping = [self.mappings.stop_all(grace), *(r.stop(grace) for r in self.serving.runners)]
            if self.pollers is not None:
                stopping.append(self.pollers.stop(grace))
            await asyncio.gather(*stopping)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if self.pollers is not None:  # at once if they were stopped above; else no child outlives this process
                await self.pollers.stop(grace)
            await self._stack.aclose()
            await self.store.close()
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        for name, counters in self.counters.items():
            totals = {k: v for k, v in vars(counters).items() if isinstance(v, int)}
            log.info("mapping totals", extra=fields(mapping=name, **totals))
        flush_repeats(final=True)  # how often client libraries repeated what they last said
        log.info("hub stopped")

    def stop(self) -> None:
        """Ask run() to stop gracefully (what SIGTERM and SIGINT do)."""
        self.stopping.set()

    def _start_monitor(self) -> None:
        """Sample every mapping's lag and counters for the admin endpoint (hub.history), until the hub stops."""
        from hub.history import Monitor, Watched

        def watched() -> dict[str, Watched]:
            running = {runner.name: runner for runner in self.runners}
            names = [*self.mappings.slots, *(r.name for r in self.serving.runners)]
            return {
                name: Watched(self.counters[name], getattr(running.get(name), "source", None))
                for name in names
                if name in self.counters
            }

        monitor = self.monitor = Monitor(watched)
        task = asyncio.ensure_future(monitor.run(self.stopping))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

        async def stop_monitor() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self._stack.push_async_callback(stop_monitor)

    # ---- live control (the admin API, the CLI, SIGHUP) --------------------------------------------------------

    async def update_mapping(self, name: str, changes: dict[str, Any]) -> Slot:
        """Change a mapping's settings at run time (AWS's UpdateEventSourceMapping). ControlError if refused."""
        if isinstance(changes.get("function"), str):
            check_function(self, changes["function"])
        return await self.mappings.update(name, changes)

    async def reload(self) -> Changes:
        """Read the configuration file again and apply the difference (hub.reload). An invalid file changes
        nothing: ControlError with the usual file:line:field errors, which are logged too."""
        if self.loader is None:
            raise ControlError("this hub was not started from a configuration file: nothing to reload", 409)
        try:
            new = await asyncio.to_thread(self.loader)
        except ConfigError as exc:
            for line in exc.errors:
                log.error("reload refused: %s", line)
            log.error("the configuration was not reloaded: the running one stays")
            raise ControlError("the configuration was not reloaded: " + "; ".join(exc.errors)) from None
        async with self._reloading:
            return await reload.apply(self, new)

    def _on_sighup(self) -> None:
        async def run() -> None:
            with contextlib.suppress(ControlError):
                await self.reload()

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
