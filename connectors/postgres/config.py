"""The configuration of the `postgres` connector: where the database is, which tables, the publication and the
slot, and how the changes are cut into lanes."""

from __future__ import annotations

import re
import zlib
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.types import Duration

StreamViewType = Literal["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TABLE = re.compile(r'^(?:("(?:[^"]|"")+"|[^".]+)\.)?("(?:[^"]|"")+"|[^".]+)$')


class PostgresConfig(BaseModel):
    """Row changes of PostgreSQL tables through logical replication (the `pgoutput` plugin), as DynamoDB Streams
    records: one ordered lane per table (or per key hash), the slot confirmed only past settled changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["postgres"]
    url: str = Field(
        "postgresql://postgres@localhost:5432/postgres",
        description="`postgresql://[user[:password]@]host[:port]/database[?sslmode=...]`: the database whose "
        "tables are read. The user needs the REPLICATION attribute (or to be a superuser), and with `create: true` "
        "the right to create a publication on the tables. Any libpq parameter may go in the query string.",
    )
    password: SecretStr | None = Field(None, description="Password, when it is not in the URL (never printed).")
    tables: list[str] = Field(
        min_length=1,
        description="The tables whose changes are read: `table` (schema `public`) or `schema.table`; quote a name "
        'with capitals or dots as SQL does (`"Sales"."Order.Lines"`). A single table may be written as a string.',
    )
    publication: str | None = Field(
        None,
        description="The publication naming the tables. Default: `eventhub_<mapping>` (lowercase, other characters "
        "as `_`).",
    )
    slot: str | None = Field(
        None,
        description="The logical replication slot (plugin `pgoutput`) that keeps the position: the database keeps "
        "every change after its confirmed LSN until the hub has settled it. Default: `eventhub_<mapping>`.",
    )
    create: bool = Field(
        True,
        description="Create the publication (for the `tables`, publishing insert, update and delete) and the slot "
        "when they do not exist, and add missing tables to an existing publication. A new slot starts at the "
        "moment it is made: changes before it are not read. `false`: both must exist.",
    )
    replica_identity_full: bool = Field(
        False,
        description="With `create: true`, set `REPLICA IDENTITY FULL` on every table whose identity is not full, so "
        "that updates and deletes carry the old row (`OldImage`). Without it PostgreSQL logs only the key of a "
        "deleted row, and nothing of an updated one's old values: `OldImage` is then left out.",
    )
    stream_view_type: StreamViewType = Field(
        "NEW_AND_OLD_IMAGES",
        description="What each record carries, as a DynamoDB stream's view type: `KEYS_ONLY`, `NEW_IMAGE`, "
        "`OLD_IMAGE` or `NEW_AND_OLD_IMAGES`. Old images need `REPLICA IDENTITY FULL` (see "
        "`replica_identity_full`).",
    )
    lanes_per_table: int = Field(
        1,
        ge=1,
        le=64,
        description="Ordered lanes per table: 1 keeps every change of a table in commit order; N spreads the rows "
        "over N lanes by a hash of the primary key, keeping order per key (lanes `schema.table#0` .. `#N-1`).",
    )
    max_buffered: int = Field(
        10000,
        ge=100,
        description="Most changes held in memory, read and not yet settled, over all lanes: beyond it the hub "
        "stops reading the stream (the database holds the rest) until half of them have settled. A lane whose "
        "function keeps failing therefore holds up the others once this many changes wait behind it.",
    )
    status_interval: Duration = Field(
        2.0,
        gt=0,
        le=60,
        description="How often the hub tells the database how far it has settled (a standby status update, which "
        "also asks for an answer): keep it well under the server's `wal_sender_timeout` (default 60s).",
    )
    receive_timeout: Duration = Field(
        30.0,
        gt=0,
        description="A connection from which nothing has come for this long, though the hub asks for an answer "
        "every `status_interval`, is taken as dead and reopened.",
    )
    connect_timeout: Duration = Field(10.0, gt=0, le=300, description="Longest wait for a connection or a query.")
    lag_interval: Duration = Field(
        60.0,
        gt=0,
        description="How often the slot's lag (bytes of WAL the slot holds past its confirmed LSN) is read for "
        "`/status` and the log.",
    )

    @field_validator("tables", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("tables")
    @classmethod
    def _tables(cls, value: list[str]) -> list[str]:
        names = [split_table(t) for t in value]
        if len(set(names)) != len(names):
            raise ValueError("a table is listed twice")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("use postgresql://user@host:port/database")
        if not parts.path.strip("/"):
            raise ValueError("name the database: postgresql://user@host:port/database")
        return value

    @field_validator("publication", "slot")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("use lowercase letters, digits and `_` (at most 63), starting with a letter or `_`")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PostgresConfig:
        if self.password is not None and urlsplit(self.url).password:
            raise ValueError("the password is given twice: in `url` and in `password`; keep one")
        if self.replica_identity_full and not self.create:
            raise ValueError("replica_identity_full changes the tables: it goes with create: true")
        return self

    # ---- derived values ------------------------------------------------------------------------------------------

    @property
    def database(self) -> str:
        """The database's name, from the URL."""
        return unquote(urlsplit(self.url).path.strip("/"))

    @property
    def secret(self) -> str | None:
        """The password given apart from the URL (never log it)."""
        return self.password.get_secret_value() if self.password is not None else None

    def table_names(self) -> list[tuple[str, str]]:
        """(schema, table) of each configured table, unquoted."""
        return [split_table(t) for t in self.tables]

    def publication_name(self, mapping: str) -> str:
        """The publication: `publication`, else one named after the mapping."""
        return self.publication or default_name(mapping)

    def slot_name(self, mapping: str) -> str:
        """The replication slot: `slot`, else one named after the mapping."""
        return self.slot or default_name(mapping)


def split_table(name: str) -> tuple[str, str]:
    """`schema.table` (SQL quoting allowed) as (schema, table); `public` when no schema is given."""
    match = _TABLE.match(name.strip())
    if not match:
        raise ValueError(f"{name!r} is not a table name: write `table` or `schema.table`")
    schema, table = (_unquote(part) if part else None for part in match.groups())
    assert table is not None
    return schema or "public", table


def _unquote(part: str) -> str:
    if part.startswith('"'):
        return part[1:-1].replace('""', '"')
    return part.lower()  # unquoted names are folded to lower case, as PostgreSQL does


def default_name(mapping: str) -> str:
    """`eventhub_<mapping>` as a PostgreSQL slot or publication name: lowercase, `[a-z0-9_]`, at most 63
    characters (a checksum of the whole name keeps long names apart)."""
    base = "eventhub_" + re.sub(r"[^a-z0-9_]", "_", mapping.lower())
    if len(base) > 63:
        base = f"{base[:54]}_{zlib.crc32(mapping.encode()):08x}"
    return base


def quote_ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
