"""Domain errors and their one mapping to gRPC statuses with ``google.rpc`` details.

Services raise these; the server interceptor turns them into a ``google.rpc.Status`` with an
``ErrorInfo`` (reason, domain, metadata) and, for a bad field, a ``BadRequest`` naming it.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

MESSAGE_LIMIT = 400
"""UTF-8 bytes of an error message (with the details it is sent about three times)."""
VALUE_LIMIT = 200
"""UTF-8 bytes of a field path or metadata value of an error."""


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (at a character), saying how long it was."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    head = data[: max(limit - 24, 0)].decode("utf-8", "ignore")
    return f"{head}… ({len(text)} chars)"


class HearthError(Exception):
    """Base class: an error a client should see with a specific gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    default_reason = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        # The message and metadata often quote the request (a name, a bad value). They travel
        # in the response's trailers, twice (grpc-message and the details), and a client
        # drops trailers over 8-16 KiB: the status would arrive as a RESOURCE_EXHAUSTED
        # "metadata size exceeds" of its own, or a gateway would call the backend down.
        message = clip(message, MESSAGE_LIMIT)
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.field = clip(field, VALUE_LIMIT) if field else field
        self.metadata = {k: clip(v, VALUE_LIMIT) for k, v in (metadata or {}).items()}
        if self.field:
            self.metadata.setdefault("field", self.field)

    def to_status(self, domain: str) -> status_pb2.Status:
        """The rich status for this error; ``domain`` is e.g. ``wake.hearth``."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=domain)
        info.metadata.update(self.metadata)
        details = [_pack(info)]
        if self.field:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=self.field, description=self.message
                    )
                ]
            )
            details.append(_pack(bad))
        return status_pb2.Status(code=_rpc_code(self.code), message=self.message, details=details)


class InvalidArgument(HearthError):
    """A request field is malformed; ``field`` names it (e.g. ``host.mac``)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, **kw: object) -> None:
        text = message if message.startswith(field) else f"{field}: {message}"
        super().__init__(text, field=field, **kw)  # type: ignore[arg-type]


class NotFound(HearthError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(HearthError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(HearthError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Unavailable(HearthError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class Unauthenticated(HearthError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(HearthError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(HearthError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


def not_found(kind: str, name: str) -> NotFound:
    """The usual NOT_FOUND for a resource name, e.g. ``not_found("host", "hosts/x")``."""
    return NotFound(f"{kind} {name!r} not found", metadata={"resource": name})


def _pack(msg: object) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)  # type: ignore[arg-type]
    return out


def _rpc_code(code: grpc.StatusCode) -> int:
    return int(code_pb2.Code.Value(code.name))


def status_code_from_int(value: int) -> grpc.StatusCode:
    """Map a numeric status code (as in google.rpc.Code) back to grpc.StatusCode."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN
