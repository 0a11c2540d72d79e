"""Text that leaves hearth is neutral: no control characters, no escape sequences, bounded.

Anything a caller or an upstream wrote (host names, Zuul project names, SAP session names,
commit subjects) can end up in a log line, an audit line, a terminal or a web page. A raw
ESC or CSI sequence would repaint an operator's terminal, a newline would forge a log line,
a bidi override would make a line read differently from what it says, and a
``javascript:`` URL would run in the web page. One function makes such text safe to print.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SPACE = re.compile(r"\s")

# What Python calls non-printable is escaped: C0/C1 controls (ESC, CR, LF, DEL, the 8-bit
# CSI 0x9b), format characters such as bidi overrides (U+202E) and zero-width joiners, line
# and paragraph separators, unusual spaces, surrogates, private-use and unassigned code points.


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def neutral(text: object, limit: int | None = None) -> str:
    """``text`` with every control/format character shown as an escape (``\\x1b``), and cut
    to ``limit`` characters (ending in ``…``) when given. Tab stays a space."""
    value = str(text)
    if limit is not None and len(value) > limit:
        value = value[: max(limit - 1, 0)] + "…"
    if value.isprintable():  # the common case costs one C-level scan
        return value
    out = []
    for char in value:
        if char == "\t":
            out.append(" ")
        elif not char.isprintable():
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def safe_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL without control characters, else ``""``
    (a ``javascript:`` or ``data:`` link from an upstream must never become clickable)."""
    if not url or not url.isprintable() or _SPACE.search(url):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return url if parts.scheme in ("http", "https") and parts.netloc else ""
