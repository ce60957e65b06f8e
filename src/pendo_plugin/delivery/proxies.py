"""Which proxy a request goes through, read once from the environment as curl and requests read it:
``HTTPS_PROXY``/``HTTP_PROXY`` per scheme, else ``ALL_PROXY`` (upper or lower case, lower case first),
and ``NO_PROXY``. Pure logic: no sockets.

- A proxy URL without a scheme (``HTTPS_PROXY=127.0.0.1:3128``, common in corporate setups) is an
  ``http://`` proxy, as curl takes it.
- A proxy URL with another scheme (``socks5://``), with CR/LF or a space inside, or without a host is
  refused: one log line naming the variable (userinfo masked), and requests that would use it fail with
  an error naming it (retried and kept in the spool like any network failure). Requests it does not
  cover are unaffected.
- ``NO_PROXY`` entries: ``*``; a host name, which also covers its subdomains (a leading ``.`` or ``*.``
  is ignored); an IP address (``[::1]`` or ``::1``); a CIDR block (``10.0.0.0/8``, ``fd00::/8``); any of
  these with ``:port``, which then matches that port only.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from pendo_plugin import shown
from pendo_plugin.logs import log_once

SCHEMES = ("http", "https")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Proxy:
    """A usable proxy: where to connect, whether with TLS, and its ``Proxy-Authorization``."""

    url: str = field(repr=False)  # may carry a password
    tls: bool
    host: str
    port: int
    auth: str | None = field(repr=False)
    shown: str  # the URL with its userinfo masked, for errors and logs


class ProxyRefused(ValueError):
    """A proxy variable this client cannot use; the message names it, userinfo masked."""


def parse_proxy(name: str, value: str) -> Proxy:
    """The proxy ``value`` of variable ``name`` names; raises :class:`ProxyRefused`."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    display = shown.url(text) or ""
    if any(ord(char) < 0x20 or char == "\x7f" for char in text):
        raise ProxyRefused(f"{name}={display!r}: a control character (CR/LF) in the proxy URL")
    if any(char.isspace() for char in text):  # 'http:// proxy:3128' would look the host ' proxy' up
        raise ProxyRefused(f"{name}={display!r}: a space inside the proxy URL")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ProxyRefused(f"{name}={display!r} is not a proxy URL") from None
    if parts.scheme not in SCHEMES:
        supported = "is not supported (http, https)"
        raise ProxyRefused(f"{name}={display!r}: proxy scheme {parts.scheme!r} {supported}")
    if not parts.hostname:
        raise ProxyRefused(f"{name}={display!r}: the proxy URL has no host")
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(pair).decode("ascii")
    default_port = 443 if parts.scheme == "https" else 80
    return Proxy(text, parts.scheme == "https", parts.hostname, port or default_port, auth, display)


def _lookup(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """The variable ``name`` (lower case wins, as curl reads it) and its value, if set and not empty."""
    for key in (name.lower(), name.upper()):
        value = environ.get(key)
        if value and value.strip():
            return key, value
    return None


@dataclass(frozen=True, slots=True)
class _Bypass:
    host: str | None  # a host name suffix, lower case
    network: Network | None
    port: int | None


def _bypass_entry(entry: str) -> _Bypass | None:
    text = entry.strip().lower()
    port: int | None = None
    if text.startswith("["):  # [::1] or [::1]:8080
        address, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        text = address
    elif text.count(":") == 1:  # host:port (an IPv6 address has more than one colon)
        host, _, number = text.partition(":")
        if number.isdigit():
            text, port = host, int(number)
    try:
        return _Bypass(None, ipaddress.ip_network(text, strict=False), port)
    except ValueError:
        pass
    text = text.removeprefix("*").lstrip(".")
    return _Bypass(text, None, port) if text else None


def _bypassed(rules: tuple[_Bypass, ...], host: str, port: int) -> bool:
    name = host.lower().strip("[]").rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for rule in rules:
        if rule.port is not None and rule.port != port:
            continue
        if rule.network is not None:
            if address is not None and address.version == rule.network.version and address in rule.network:
                return True
        elif rule.host is not None and (name == rule.host or name.endswith("." + rule.host)):
            return True
    return False


class ProxyTable:
    """The proxy for each origin, from the environment read once (see the module docstring)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._by_scheme: dict[str, Proxy | ProxyRefused | None] = {}
        for scheme in SCHEMES:
            found = _lookup(environ, f"{scheme}_proxy") or _lookup(environ, "all_proxy")
            if found is None:
                self._by_scheme[scheme] = None
                continue
            try:
                self._by_scheme[scheme] = parse_proxy(*found)
            except ProxyRefused as refused:
                self._by_scheme[scheme] = refused
                log_once(
                    f"proxy-refused:{found[0]}",
                    logging.ERROR,
                    "pendo_plugin: %s; requests to %s:// URLs fail (retried, kept in the spool) until it "
                    "is fixed",
                    refused,
                    scheme,
                )
        no_proxy = _lookup(environ, "no_proxy")
        entries = no_proxy[1].split(",") if no_proxy else []
        self._all_direct = any(entry.strip() == "*" for entry in entries)
        self._bypass = tuple(rule for entry in entries if (rule := _bypass_entry(entry)) is not None)

    def for_origin(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for this origin, or None to connect directly; raises :class:`ProxyRefused`."""
        chosen = self._by_scheme.get(scheme)
        if chosen is None or self._all_direct or _bypassed(self._bypass, host, port):
            return None
        if isinstance(chosen, ProxyRefused):
            raise ProxyRefused(str(chosen))
        return chosen
