"""Generic runtime bounds: error statuses stay small whatever the request quoted in them
(hearth_runtime.errors); forged page tokens are INVALID_ARGUMENT (hearth_runtime.resources)."""

from __future__ import annotations

import base64

import pytest

from hearth_runtime.errors import (
    MESSAGE_LIMIT,
    VALUE_LIMIT,
    InvalidArgument,
    clip,
    not_found,
)
from hearth_runtime.resources import paginate


def test_clip_keeps_short_text_and_cuts_long_text_at_a_character() -> None:
    assert clip("hosts/a", 10) == "hosts/a"
    for char in ("a", "é", "\U0001f600"):
        cut = clip(char * 10_000, 100)
        assert len(cut.encode()) <= 100
        assert cut.endswith("… (10000 chars)")
        assert cut.startswith(char)


def test_a_huge_name_makes_a_small_status() -> None:
    name = "hosts/" + "\U0001f600" * 70_000
    status = not_found("host", name).to_status("wake.hearth")
    assert len(status.message.encode()) <= MESSAGE_LIMIT
    # grpc clients drop trailers over 8 KiB (soft) - 16 KiB (hard): message + details.
    assert len(status.message.encode()) + len(status.SerializeToString()) < 4096

    bad = InvalidArgument("host.mac", f"{'x' * 50_000!r} is not a MAC address")
    assert bad.message.startswith("host.mac: 'xxx")
    assert len(bad.message.encode()) <= MESSAGE_LIMIT
    assert all(len(v.encode()) <= VALUE_LIMIT for v in bad.metadata.values())
    assert len(bad.to_status("wake.hearth").SerializeToString()) < 4096


def test_forged_page_tokens_are_invalid_argument() -> None:
    """A page token of the services' shape whose offset is not an integer."""
    _, token = paginate([1, 2, 3], 1, "")
    assert paginate([1, 2, 3], 1, token) == ([2], paginate([1, 2, 3], 2, "")[1])
    for doc in ('{"o":Infinity}', '{"o":-1e400}', '{"o":NaN}', '{"o":"1"}', '{"o":1.5}', "[1]"):
        forged = base64.urlsafe_b64encode(doc.encode()).decode()
        with pytest.raises(InvalidArgument) as err:
            paginate([1, 2, 3], 1, forged)
        assert err.value.field == "page_token"
