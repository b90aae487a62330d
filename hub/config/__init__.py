"""The configuration models and `load_config`: one YAML file, validated before anything starts.

Every error names the file, the line and the field. Connector models live next to their connectors and are
joined into one discriminated union on `source.type` (`loading.config_model`).

- `functions`: FunctionConfig, FunctionDefaults (what runs a handler, and Lambda's limits)
- `mappings`: MappingConfig and its parts (AWS's event source mapping settings, per family of source)
- `hub`: HubConfig and its sections (store, region, admin, S3 endpoint, HTTP server, cluster)
- `loading`: load_config, validate, config_model, full_model
"""

from __future__ import annotations

from hub.config.functions import RESERVED_VARIABLES, Environment, FunctionConfig, FunctionDefaults
from hub.config.hub import AdminConfig, ClusterConfig, HttpServerConfig, HubConfig, S3EndpointConfig
from hub.config.loading import config_model, full_model, load_config, validate
from hub.config.mappings import (
    APPLIES,
    FAMILY_DEFAULTS,
    DestinationConfig,
    FileDestination,
    FilterCriteria,
    MappingConfig,
    ProvisionedPollerConfig,
)
from hub.yamlsource import ConfigError

__all__ = [
    "APPLIES",
    "FAMILY_DEFAULTS",
    "RESERVED_VARIABLES",
    "AdminConfig",
    "ClusterConfig",
    "ConfigError",
    "DestinationConfig",
    "Environment",
    "FileDestination",
    "FilterCriteria",
    "FunctionConfig",
    "FunctionDefaults",
    "HttpServerConfig",
    "HubConfig",
    "MappingConfig",
    "ProvisionedPollerConfig",
    "S3EndpointConfig",
    "config_model",
    "full_model",
    "load_config",
    "validate",
]
