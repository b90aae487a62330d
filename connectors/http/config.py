"""The `http` source's settings: one route of the hub's HTTP server (`http_server:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.http.routes import RouteError, check_path

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")


class SignatureConfig(BaseModel):
    """A plain webhook's HMAC check (GitHub's `X-Hub-Signature-256`, and the like): the hex HMAC of the raw body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: str = Field(description="The request header that carries the signature (`X-Hub-Signature-256`).")
    secret_env: str = Field(
        description="Name of the environment variable (of the hub's process) that holds the secret; never the "
        "secret itself. A secret: its value is masked in every log line and error."
    )
    algorithm: Literal["sha1", "sha256", "sha512"] = Field("sha256", description="The HMAC's hash.")
    prefix: str = Field("", description="What the header's value starts with before the hex digest (`sha256=`).")


class HttpConfig(BaseModel):
    """A route of the hub's HTTP server: a request to it is a synchronous invocation (RequestResponse)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["http"]
    method: str = Field("ANY", description="GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY.")
    path: str = Field(
        description="API Gateway route syntax: `/orders/{id}`, a greedy last `{proxy+}`, or `$default` (HTTP APIs "
        "and function URLs: every request no other route takes)."
    )
    api: Literal["rest", "http", "url"] = Field(
        "http",
        description="The event's shape: rest (API Gateway REST API, payload 1.0), http (HTTP API, payload 2.0), "
        "url (Lambda function URL).",
    )
    api_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9-]{1,63}$",
        description="requestContext.apiId (a function URL's id). Default: the mapping's name.",
    )
    stage: str | None = Field(None, description='requestContext.stage. Default: "Prod" (rest, as SAM), "$default".')
    signature: SignatureConfig | None = Field(
        None, description="Check an HMAC signature header before invoking; 401 when it is missing or wrong."
    )
    listen: str | None = Field(
        None,
        pattern=r"^[^:]+:\d+$",
        description="`host:port` of a server of this route's own (port 0: any free port), as a function URL is a "
        "host of its own. Default: `http_server.listen`, shared by every route without one.",
    )

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        upper = value.upper()
        if upper not in METHODS:
            raise ValueError(f"{value!r} is not one of {', '.join(METHODS)}")
        return upper

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            return check_path(value)
        except RouteError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _default_route(self) -> HttpConfig:
        if self.path == "$default" and self.api == "rest":
            raise ValueError("a REST API has no $default route: use /{proxy+}")
        return self

    @property
    def stage_name(self) -> str:
        """The stage events name: `stage`, else `Prod` (REST) or `$default` (HTTP API, function URL), as SAM names
        them."""
        return self.stage or ("Prod" if self.api == "rest" else "$default")
