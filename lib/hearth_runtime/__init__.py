"""The one runtime every hearth service is built on.

A service's ``main`` is a few lines: a :class:`ServiceSpec` naming its app (``app.py``) and
servicer (``service.py``), handed to :func:`run_service`. The runtime serves gRPC with health
and reflection, exports Prometheus metrics, loads and validates configuration, logs in one
format, maps domain errors to gRPC statuses and shuts down gracefully.
"""

from hearth_runtime.config import ConfigError, ServiceConfig, load_config
from hearth_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    HearthError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from hearth_runtime.logs import get_logger, setup_logging
from hearth_runtime.server import App, Runtime, ServiceSpec, run_service, start_service

__all__ = [
    "AlreadyExists",
    "App",
    "ConfigError",
    "FailedPrecondition",
    "HearthError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Runtime",
    "ServiceConfig",
    "ServiceSpec",
    "Unauthenticated",
    "Unavailable",
    "get_logger",
    "load_config",
    "run_service",
    "setup_logging",
    "start_service",
]
