"""The whole hub's configuration: its store, region, endpoints, cluster settings, functions and mappings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from hub import registry
from hub.config.base import Model
from hub.config.functions import FunctionConfig, FunctionDefaults
from hub.config.mappings import MappingConfig
from hub.source import SettingError
from hub.types import Duration


class AdminConfig(Model):
    """The admin HTTP endpoint: the console, /status (JSON), /metrics (Prometheus), /healthz, and the API that
    changes mappings at run time."""

    listen: str = Field(
        "127.0.0.1:9180",
        pattern=r"^[^:]+:\d+$",
        description="`host:port` to listen on. Loopback by default; any other address needs a `token`.",
    )
    token: SecretStr | None = Field(
        None,
        description="A bearer token (`Authorization: Bearer <token>`) that every request changing something (disable, "
        "enable, update, reload, replay) must carry; `hub` commands read it from HUB_ADMIN_TOKEN. Required when "
        "`listen` is not a loopback address. Reading pages needs no token.",
    )

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> AdminConfig:
        host = self.listen.rpartition(":")[0].strip("[]")
        if self.token is None and host not in ("127.0.0.1", "localhost", "::1"):
            raise SettingError(
                ("listen",),
                f"{host} is reachable from other machines: set admin.token (e.g. token: ${{HUB_ADMIN_TOKEN}}) so "
                "that only who holds it can change mappings, or listen on 127.0.0.1",
            )
        return self


class S3EndpointConfig(Model):
    """An S3-compatible endpoint over local folders, so that handlers written for Lambda read and write the objects
    their events name with boto3, unchanged. It serves each `files` mapping's folder as the bucket its events name,
    plus `buckets`, and starts only when there is one to serve. Functions find it in `AWS_ENDPOINT_URL_S3`."""

    enabled: bool = Field(
        True, description="Serve the folders when there is one (a `files` mapping or `buckets`); false: never."
    )
    listen: str = Field(
        "127.0.0.1:0",
        pattern=r"^[^:]+:\d+$",
        description="`host:port` to listen on; port 0 takes any free port (functions are told which).",
    )
    buckets: dict[str, str] = Field(
        default_factory=dict,
        description="More buckets, `{name: folder}`: where functions write results that no mapping watches.",
    )
    access_key_id: str = Field("eventhub", description="The access key id requests must be signed with.")
    secret_access_key: SecretStr | None = Field(
        None, description="The secret requests must be signed with. Default: a new random one at every start."
    )

    @field_validator("buckets")
    @classmethod
    def _bucket_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,255}", name):
                raise ValueError(f"{name!r} is not a bucket name: use letters, digits, '.', '-' and '_'")
        return value


class HttpServerConfig(Model):
    """The one HTTP server every `http` mapping is served on, as one API Gateway host serves many routes."""

    listen: str = Field(
        "127.0.0.1:3000", pattern=r"^[^:]+:\d+$", description="`host:port` to listen on; port 0 takes any free port."
    )


class ClusterConfig(Model):
    """Several hubs sharing one checkpoint store (PostgreSQL or Redis): how they share leases."""

    failover_time: Duration = Field(
        10.0,
        ge=1.0,
        le=600.0,
        description="A hub that dies loses its leases (shards, schedules, folders, polled buckets), and the others "
        "take them over from the last checkpoint, within this time. A lease lasts 0.7 x this after each renewal, and "
        "hubs renew and rebalance every 0.1 x. Shorter fails over faster and writes to the store more often.",
    )


class HubConfig(Model):
    """The whole hub."""

    model_config = ConfigDict(defer_build=True)  # built once: as the joined model (loading.config_model)

    checkpoints: str = Field(
        "sqlite:///.hub/state.db",
        description="`sqlite:///path` (default: one hub), `postgresql://user:password@host:port/db` (the store "
        "that several hubs share; `?schema=NAME` keeps its tables in that schema), `redis://host:port/db` (also "
        "shared, off this disk), or `memory://` (forgets on exit). A password in the URL is a secret.",
    )
    region: str = Field("us-east-1", description="AWS region written into events and ARNs.")
    account_id: str = Field("000000000000", pattern=r"^\d{12}$", description="AWS account id for ARNs.")
    shutdown_grace: Duration = Field(30.0, description="On SIGTERM/SIGINT, how long in-flight work may finish.")
    admin: AdminConfig | None = Field(
        None, description="Serve /status, /metrics and /healthz over HTTP (off when unset)."
    )
    cpu_affinity: bool | list[int] = Field(
        False,
        description="Deprecated, ignored (the hub warns, naming the file and line): it pinned each hub process to "
        "a CPU, which did not make the default configuration faster (bench/README.md). Still accepted: `true`, "
        "`false` or a list of CPU numbers.",
    )
    function_defaults: FunctionDefaults = Field(
        default_factory=lambda: FunctionDefaults(), description="What every function gets unless it sets its own."
    )
    s3_endpoint: S3EndpointConfig = Field(
        default_factory=lambda: S3EndpointConfig(),
        description="The S3-compatible endpoint over the `files` folders that functions reach with boto3 (on by "
        "default, on loopback, when there is a folder to serve).",
    )
    http_server: HttpServerConfig = Field(
        default_factory=lambda: HttpServerConfig(),
        description="Where `http` mappings are served (started only when there is one).",
    )
    cluster: ClusterConfig = Field(
        default_factory=lambda: ClusterConfig(),
        description="Several hubs on one shared store (`checkpoints: postgresql://...` or `redis://...`): they share "
        "shards, schedules, folders and polled buckets through leases. Ignored with sqlite and memory stores.",
    )
    functions: dict[str, FunctionConfig] = Field(default_factory=dict)
    mappings: list[MappingConfig] = Field(default_factory=list)

    @field_validator("cpu_affinity", mode="before")
    @classmethod
    def _cpus(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):  # text from a `${VAR}`
            return value.lower() == "true"
        if isinstance(value, list) and value and all(type(cpu) is int and cpu >= 0 for cpu in value):
            return value
        if isinstance(value, list) and not value:
            raise ValueError("name at least one CPU, or use true (every CPU the hub may use) or false (off)")
        raise ValueError(f"use true, false or a list of CPU numbers such as [0, 1], not {value!r}")

    @field_validator("checkpoints")
    @classmethod
    def _store_url(cls, value: str) -> str:
        import importlib.util

        shared = ("redis://", "rediss://", "postgresql://", "postgres://")
        if not (value.startswith(("sqlite:///", *shared)) or value == "memory://"):
            raise ValueError(
                "use sqlite:///path/to/state.db, postgresql://user@host:5432/db, redis://host:6379/0 or memory://"
            )
        if value.startswith(("redis://", "rediss://")) and importlib.util.find_spec("redis") is None:
            raise ValueError("a redis checkpoint store needs redis-py: pip install 'eventhub[redis]'")
        if value.startswith(("postgresql://", "postgres://")):
            if importlib.util.find_spec("asyncpg") is None:
                raise ValueError("a postgresql checkpoint store needs asyncpg: pip install 'eventhub[postgres]'")
            from hub.postgres_store import split_url

            split_url(value)  # a bad ?schema= is refused at load, not at the first write
        return value

    @model_validator(mode="after")
    def _cross_check(self) -> HubConfig:
        seen: dict[str, int] = {}
        for i, mapping in enumerate(self.mappings):
            if mapping.function not in self.functions:
                known = ", ".join(sorted(self.functions)) or "none defined"
                raise SettingError(
                    ("mappings", i, "function"), f"no function {mapping.function!r} (functions: {known})"
                )
            name = mapping.display_name
            if name in seen:
                raise SettingError(
                    ("mappings", i, "name"),
                    f"two mappings are named {name!r} (mappings[{seen[name]}] and mappings[{i}]): give each a "
                    "distinct `name:` (checkpoints are kept under it)",
                )
            seen[name] = i
            if mapping.pollers > 1 and mapping.leases is not None and not self.shared_store:
                raise SettingError(
                    ("mappings", i, "provisioned_poller_config"),
                    f"{mapping.source.type} pollers share the work through leases in the checkpoint store, and "
                    f"{self.checkpoints.partition(':')[0]} is a store of one process: use checkpoints: "
                    "postgresql://... or redis://...",
                )
        self._in_process_variables_agree()
        self.s3_buckets()
        return self

    @property
    def shared_store(self) -> bool:
        """True when the checkpoint store is one several hub processes share (PostgreSQL, Redis)."""
        return self.checkpoints.startswith(("redis://", "rediss://", "postgresql://", "postgres://"))

    def _in_process_variables_agree(self) -> None:
        """In-process functions share the hub's environment: one variable cannot hold two functions' values."""
        owner: dict[str, tuple[str, str]] = {}
        for name, function in self.functions.items():
            if function.runtime != "in-process":
                continue
            for key, value in {**self.function_defaults.environment, **function.environment}.items():
                if key in owner and owner[key][1] != value:
                    raise SettingError(
                        ("functions", name, "environment", key),
                        f"in-process functions share the hub's environment, and function {owner[key][0]!r} gives "
                        f"{key} another value: use `runtime: python` (the default), where each function has its own",
                    )
                owner.setdefault(key, (name, value))

    def s3_buckets(self) -> dict[str, str]:
        """{bucket: absolute folder} the S3 endpoint serves: empty when it is off or has nothing to serve. Two
        folders under one bucket name are an error."""
        if not self.s3_endpoint.enabled:
            return {}
        buckets = {name: str(Path(folder).absolute()) for name, folder in self.s3_endpoint.buckets.items()}
        for i, mapping in enumerate(self.mappings):
            spec = registry.get(mapping.source.type)
            if not mapping.enabled or spec.buckets is None:
                continue
            for name, folder in spec.buckets(mapping.source).items():
                if buckets.setdefault(name, folder) != folder:
                    raise SettingError(
                        ("mappings", i, "source", "bucket"),
                        f"bucket {name!r} is already the folder {buckets[name]}: the S3 endpoint serves one folder "
                        "per bucket name (set `bucket:` to tell them apart)",
                    )
        return buckets
