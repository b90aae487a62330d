"""Connection settings shared by every connector and destination that talks to an AWS API (SQS, Kinesis,
DynamoDB Streams, S3, Lambda), and a client factory. aioboto3 is imported only when a client is made."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AwsConnection(BaseModel):
    """Where the AWS API is and who we are. Unset values come from the usual AWS environment and files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: str | None = Field(
        None, description="An S3/SQS/Kinesis-compatible endpoint (LocalStack, moto, MinIO...); default: AWS."
    )
    region: str | None = Field(None, description="AWS region; default: AWS_DEFAULT_REGION, then the hub's region.")
    access_key_id: SecretStr | None = Field(None, description="Default: the AWS credential chain.")
    secret_access_key: SecretStr | None = Field(None, description="Default: the AWS credential chain.")
    session_token: SecretStr | None = None
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a connection.")
    read_timeout: float = Field(30.0, gt=0, description="Seconds to wait for an answer (long polls add theirs).")
    max_attempts: int = Field(3, ge=1, description="botocore's retries of throttled or failed calls.")
    max_pool_connections: int = Field(
        50, ge=1, description="Connections one client keeps open (every shard of a mapping shares them)."
    )


def client(conn: AwsConnection, service: str, default_region: str) -> AbstractAsyncContextManager[Any]:
    """An aioboto3 client for `service`, as an async context manager."""
    import aioboto3
    from botocore.config import Config

    session = aioboto3.Session()
    secret = conn.secret_access_key.get_secret_value() if conn.secret_access_key else None
    return session.client(  # type: ignore[no-any-return]
        service,
        endpoint_url=conn.endpoint_url,
        region_name=conn.region or default_region,
        aws_access_key_id=conn.access_key_id.get_secret_value() if conn.access_key_id else None,
        aws_secret_access_key=secret,
        aws_session_token=conn.session_token.get_secret_value() if conn.session_token else None,
        config=Config(
            connect_timeout=conn.connect_timeout,
            read_timeout=conn.read_timeout,
            retries={"max_attempts": conn.max_attempts, "mode": "standard"},
            max_pool_connections=conn.max_pool_connections,
        ),
    )
