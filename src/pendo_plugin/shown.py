"""Showing untrusted text to an operator: the one escaping function, the one way a URL is shown, and an
excerpt of an answer with every configured secret masked.

Every log line and command output that prints text the plugin did not write itself (Pendo's answers and
field names, Redis flag values and consumer names, visitor ids, spool file names, URLs from settings)
goes through :func:`escape` (control characters, newlines and other invisible characters written as
``\\xNN``/``\\uNNNN``, so ``\\x1b[2J`` cannot clear a screen and a newline cannot forge a line), and every
URL through :func:`url` (userinfo and ``password=``-style query values masked). Pure functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

__all__ = ["MASK", "escape", "excerpt", "url"]

MASK = "****"
EXCERPT_CHARS = 200
"""The most of an answer's text a log line or report carries."""
_SCAN_BYTES = 4096
"""How much of an answer is read to find secrets in it: a secret cut by the excerpt's end is still found."""
_SECRET_QUERY = re.compile(
    r"pass|pwd|secret|token|key|auth|credential|signature|sig$|session|cookie", re.IGNORECASE
)
"""Query parameter names whose value is masked (``password``, ``api_key``, ``access_token``, ...)."""
_USERINFO = re.compile(r"(?<=//)[^/?#]*@")


def _escaped_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: object, limit: int | None = None) -> str:
    """``text`` (``str()`` of it) fit for one line of a terminal or a log: every character that is not
    printable (C0/C1 controls, DEL, newlines, Unicode line and paragraph separators, format characters
    such as bidi overrides, lone surrogates) written as a Python-style escape; cut to ``limit``
    characters (``...`` appended) when given. Never raises."""
    try:
        value = text if type(text) is str else str(text)
    except Exception:
        value = type(text).__name__
    if limit is not None and len(value) > limit:
        value = value[:limit] + "..."
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else _escaped_char(char) for char in value)


def url(text: str | None) -> str | None:
    """``text`` as a URL fit to show: a password in the userinfo masked (a user without a password, which
    may be a token, masked whole), every ``password=``-style query value masked, the rest escaped. A
    value that does not parse as a URL loses everything between ``//`` and ``@``, one without a scheme
    everything before ``@``. None stays None."""
    if text is None:
        return None
    if "://" not in text and "@" in text:  # no scheme (``user:pw@host:3128``): all before ``@`` hidden
        return escape(f"{MASK}@{text.rsplit('@', 1)[1]}")
    try:
        parts = urlsplit(text)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(name, MASK if _SECRET_QUERY.search(name) else value) for name, value in pairs], safe="*"
            )
        shown = text
        if netloc != parts.netloc or query != parts.query:
            shown = parts._replace(netloc=netloc, query=query).geturl()
            if not parts.netloc and text.startswith(f"{parts.scheme}://"):  # unix:///path keeps its //
                shown = f"{parts.scheme}://" + shown[len(parts.scheme) + 1 :]
    except ValueError:
        shown = _USERINFO.sub(f"{MASK}@", text)
        if "?" in shown:
            shown = shown.split("?", 1)[0] + f"?{MASK}"
    return escape(shown)


def excerpt(body: bytes | str, secrets: Iterable[str | None] = (), limit: int = EXCERPT_CHARS) -> str:
    """The start of an answer's body for a log line or report: every non-empty secret in ``secrets``
    masked wherever it appears, as is, JSON-escaped or percent-encoded (found in the first 4 KB, so one
    cut by the excerpt's end is masked too), then escaped (:func:`escape`) and cut to ``limit``
    characters."""
    text = body[:_SCAN_BYTES].decode("utf-8", "replace") if isinstance(body, bytes) else body[:_SCAN_BYTES]
    forms = {form for secret in secrets if secret for form in _forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return escape(text, limit)


def _forms(secret: str) -> tuple[str, ...]:
    """How a secret may appear in an answer that echoes a request: as is, JSON-escaped, percent-encoded."""
    ascii_json, utf8_json = json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]
    return secret, ascii_json, utf8_json, quote(secret, safe="")
