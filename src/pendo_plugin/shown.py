"""Showing untrusted text to an operator: the one escaping function, the one way a URL is shown, and an
excerpt of an answer with every configured secret masked.

Every log line and command output that prints text the plugin did not write itself (Pendo's answers and
field names, Redis flag values and consumer names, visitor ids, spool file names, URLs from settings)
goes through :func:`escape` (control characters, newlines and other invisible characters written as
``\\xNN``/``\\uNNNN``, so ``\\x1b[2J`` cannot clear a screen and a newline cannot forge a line), and every
URL through :func:`url` (userinfo and ``password=``-style query values masked). Pure functions.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit

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
    may be a token, masked whole), every ``password=``-style value of the query or the fragment masked,
    the rest escaped. Userinfo without ``//`` before it (``user:pw@host:3128``, ``redis:/user:pw@host``)
    is masked up to its last ``@``. A value that does not parse as a URL loses everything between ``//``
    and ``@``. None stays None."""
    if text is None:
        return None
    if "://" not in text and "@" in text:  # no scheme (``user:pw@host:3128``): all before ``@`` hidden
        text = f"{MASK}@{text.rsplit('@', 1)[1]}"  # and its query and fragment checked below
    try:
        parts = urlsplit(text)
        netloc, path = parts.netloc, parts.path
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
        elif not netloc and "@" in path:  # no //: the parser took the userinfo for a path
            path = f"{MASK}@{path.rpartition('@')[2]}"
        query, fragment = _masked_pairs(parts.query), _masked_pairs(parts.fragment)
        shown = text
        if (netloc, path, query, fragment) != (parts.netloc, parts.path, parts.query, parts.fragment):
            shown = parts._replace(netloc=netloc, path=path, query=query, fragment=fragment).geturl()
            if not parts.netloc and text.startswith(f"{parts.scheme}://"):  # unix:///path keeps its //
                shown = f"{parts.scheme}://" + shown[len(parts.scheme) + 1 :]
    except ValueError:
        shown = _USERINFO.sub(f"{MASK}@", text)
        if "?" in shown:
            shown = shown.split("?", 1)[0] + f"?{MASK}"
    return escape(shown)


def _masked_pairs(text: str) -> str:
    """A query (or a fragment of ``name=value`` pairs) with every ``password=``-style value masked."""
    if not text or ("=" not in text and not _SECRET_QUERY.search(text)):
        return text
    pairs = parse_qsl(text, keep_blank_values=True)
    masked = [(name, MASK if _SECRET_QUERY.search(name) else value) for name, value in pairs]
    return urlencode(masked, safe="*")


def excerpt(body: bytes | str, secrets: Iterable[str | None] = (), limit: int = EXCERPT_CHARS) -> str:
    """The start of an answer's body for a log line or report: every non-empty secret in ``secrets``
    masked wherever it appears (found in the first 4 KB, so one cut by the excerpt's end is masked too),
    then escaped (:func:`escape`) and cut to ``limit`` characters. A secret is found however an echo
    wrote it (:func:`_pattern`)."""
    text = body[:_SCAN_BYTES].decode("utf-8", "replace") if isinstance(body, bytes) else body[:_SCAN_BYTES]
    pattern, encoded = _pattern(tuple(sorted({secret for secret in secrets if secret})))
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for form in encoded:
        text = text.replace(form, MASK)
    return escape(text, limit)


_NAMED_ENTITIES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}
_LINE_BREAK = r"(?:(?:\\r|\\n|[\r\n])+[ \t]*|\x00)?"
"""What an echo may put between two characters of a secret: a folded or wrapped line, raw or JSON-escaped,
or the NUL of UTF-16 text read as UTF-8."""


@functools.lru_cache(maxsize=8)
def _pattern(secrets: tuple[str, ...]) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    """How each secret may appear in an echo of a request: one case-insensitive pattern for each
    character as is, backslash-escaped, JSON ``\\uXXXX``, percent-encoded (any case, ``+`` for a space)
    or an HTML entity, in any mix, lines folded anywhere; and the base64 texts of the secret (standard and
    URL-safe, at each of the three alignments a surrounding text gives it), replaced as they are (a
    pattern for them took 0.6 ms per 4 KB, the replacements 2 us). Masking too much is safe; too little
    is not."""
    if not secrets:
        return None, ()
    longest_first = sorted(secrets, key=len, reverse=True)  # a secret inside another: the longer one whole
    forms = [_LINE_BREAK.join(_char_forms(char) for char in secret) for secret in longest_first]
    encoded = {form for secret in secrets for form in _base64_forms(secret)}
    return re.compile("|".join(forms), re.IGNORECASE), tuple(sorted(encoded, key=len, reverse=True))


def _char_forms(char: str) -> str:
    code = ord(char)
    utf16 = char.encode("utf-16-be", "surrogatepass")
    json_escape = "".join(f"\\\\u{utf16[i:i + 2].hex()}" for i in range(0, len(utf16), 2))
    forms = [re.escape(char), "\\\\" + re.escape(char), json_escape, f"&#0*{code};?", f"&#x0*{code:x};?"]
    forms.append("".join(f"%{byte:02x}" for byte in char.encode("utf-8", "surrogatepass")))
    if char == " ":
        forms.append(r"\+")
    if char in _NAMED_ENTITIES:
        forms.append(f"&{_NAMED_ENTITIES[char]};")
    return "(?:" + "|".join(forms) + ")"


def _base64_forms(secret: str) -> list[str]:
    """The base64 text that encodes ``secret`` alone, at offsets 0, 1 and 2 of a surrounding text."""
    raw = secret.encode("utf-8", "surrogatepass")
    if len(raw) < 6:  # too short to find reliably: any text would match
        return []
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        first, last = -(-8 * offset // 6), 8 * (offset + len(raw)) // 6
        forms.append(encoded[first:last])
        forms.append(encoded[first:last].replace("+", "-").replace("/", "_"))
    return forms
