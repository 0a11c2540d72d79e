"""AIP helpers shared by every service: resource names, paging and update masks."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from hearth_runtime.errors import InvalidArgument

T = TypeVar("T")
M = TypeVar("M", bound=Message)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_id(field: str, value: str) -> str:
    """A resource id as in AIP-122: lowercase letters, digits and hyphens, 1-63 chars."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if not _ID.match(value):
        raise InvalidArgument(
            field, f"{value!r} is not a valid id (lowercase letters, digits, '-', 1-63 chars)"
        )
    return value


def parse_name(field: str, name: str, collection: str) -> str:
    """``parse_name("name", "hosts/devbox", "hosts") -> "devbox"`` or INVALID_ARGUMENT."""
    prefix = collection + "/"
    if not name:
        raise InvalidArgument(field, f"must not be empty (expected {collection}/{{id}})")
    if not name.startswith(prefix):
        raise InvalidArgument(field, f"{name!r} is not a {collection}/{{id}} resource name")
    return check_id(field, name[len(prefix) :])


def paginate(
    items: Sequence[T], page_size: int, page_token: str, context: str = ""
) -> tuple[list[T], str]:
    """One page of ``items`` and the token for the next (empty on the last page).

    ``context`` (e.g. the request's filter) is bound into the token so that a token cannot be
    reused with a different query.
    """
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    offset = _decode_token(page_token, context) if page_token else 0
    page = list(items[offset : offset + size])
    more = offset + size < len(items)
    return page, _encode_token(offset + size, context) if more else ""


def _encode_token(offset: int, context: str) -> str:
    raw = json.dumps({"o": offset, "c": context}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, context: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = data["o"]
        same = data.get("c", "") == context
        # Only an integer is a token of ours: a forged Infinity or 1e400 made int() raise
        # OverflowError, which reached the client as UNKNOWN.
        if type(offset) is not int:
            raise ValueError(offset)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise InvalidArgument("page_token", "is not a token returned by a previous call") from None
    if offset < 0 or not same:
        raise InvalidArgument("page_token", "does not belong to this query")
    return offset


def apply_update_mask(
    target: M, patch: M, mask: field_mask_pb2.FieldMask, allowed: Iterable[str], message_field: str
) -> M:
    """Copy the masked fields of ``patch`` onto a copy of ``target``.

    An empty mask means every allowed field that is set in ``patch`` (AIP-134). Paths outside
    ``allowed`` are INVALID_ARGUMENT naming ``update_mask``.
    """
    allowed_set = set(allowed)
    paths = list(mask.paths)
    if not paths:
        paths = [f.name for f, _ in patch.ListFields() if f.name in allowed_set]
    for path in paths:
        if path not in allowed_set:
            raise InvalidArgument(
                "update_mask",
                f"path {path!r} cannot be updated; updatable: {', '.join(sorted(allowed_set))}",
            )
    result = type(target)()
    result.CopyFrom(target)
    for path in paths:
        field = patch.DESCRIPTOR.fields_by_name.get(path)
        if field is None:
            raise InvalidArgument("update_mask", f"{message_field} has no field {path!r}")
        if _is_repeated(field):
            result.ClearField(path)
            getattr(result, path).extend(getattr(patch, path))
        elif field.message_type is not None:
            result.ClearField(path)
            if patch.HasField(path):
                getattr(result, path).CopyFrom(getattr(patch, path))
        else:
            setattr(result, path, getattr(patch, path))
    return result


def _is_repeated(field: Any) -> bool:
    # protobuf >= 6 has is_repeated; older versions only label.
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(field.label == field.LABEL_REPEATED)
