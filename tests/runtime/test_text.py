"""Text leaving hearth is neutral: properties over any string, and the log formatter."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from hearth_runtime.logs import KeyValueFormatter, kv
from hearth_runtime.text import neutral, safe_url


def _is_safe(text: str) -> bool:
    return all(c.isprintable() or c == " " for c in text)


@given(st.text(), st.one_of(st.none(), st.integers(min_value=1, max_value=300)))
def test_neutral_text_is_printable_and_bounded(text: str, limit: int | None) -> None:
    out = neutral(text, limit)
    assert _is_safe(out)
    if limit is not None:
        # Each kept character becomes at most a 10-character escape.
        assert len(out) <= 10 * limit
    if text.isprintable() and (limit is None or len(text) <= limit):
        assert out == text  # ordinary text is left alone


def test_escape_sequences_and_line_breaks_are_shown_not_obeyed() -> None:
    assert neutral("\x1b[2J\x1b]0;pwned\x07x") == "\\x1b[2J\\x1b]0;pwned\\x07x"
    assert neutral("a\nb\rc\u2028d") == "a\\x0ab\\x0dc\\u2028d"
    assert neutral("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert neutral("\x9b31m") == "\\x9b31m"  # the 8-bit CSI
    assert neutral("x" * 10, 4) == "xxx…"


@given(st.text())
def test_safe_url_only_passes_http_links(url: str) -> None:
    out = safe_url(url)
    assert out in ("", url)
    if out:
        assert out.startswith(("http://", "https://")) and _is_safe(out)


def test_script_urls_are_dropped() -> None:
    for bad in ("javascript:alert(1)", "JaVaScRiPt:x", "data:text/html,x", "http://a\nb", "//x"):
        assert safe_url(bad) == ""
    assert safe_url("https://review.opendev.org/c/123") == "https://review.opendev.org/c/123"


@given(st.text(), st.text(), st.text())
def test_one_log_record_is_one_neutral_line(message: str, key: str, value: str) -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "%s", (message,), None)
    record.kv = kv(**{key or "k": value})["kv"]
    line = KeyValueFormatter("wake").format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert len(line) < 8000
