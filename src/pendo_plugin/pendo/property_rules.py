"""Property rules: which track properties and identify/group traits reach Pendo, removed or hashed.
Pure: no I/O, no logging.

A rule names a property (``ssn``) or a dotted path to a nested value (``address.street``; a list on the way,
such as ``products.email``, applies to each object in it); a name that itself holds a dot matches too.
Names are compared as Pendo would name them (``clean_field_name``: ``"ssn "`` is ``ssn``), case-sensitively.
``deny`` removes; ``allow`` (track properties only, when set) keeps nothing else; ``hash`` replaces the value
by HMAC-SHA256 under ``hash_key``, as hex (a string's UTF-8 text is hashed, any other value its compact JSON
text; ``null`` stays ``null``); without a key a hashed field is removed instead (fail closed). They apply to
a track's ``properties`` and to ``traits`` and ``context.traits`` of every call, in that order: allow, deny,
hash.
The message is never changed: a changed copy is returned.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pendo_plugin.pendo.jsonsafe import json_safe
from pendo_plugin.pendo.sanitize import clean_field_name, is_valid_field_name

__all__ = ["PropertyRules", "apply_rules", "keyed_hash"]

Trie = dict[str, Any]  # name -> a nested Trie, or _LEAF where a path ends
_LEAF: Trie = {}


def _pendo_name(name: Any) -> str:
    """The name Pendo would show for a property or trait name (``"ssn "`` and ``"ssn\u200b"`` are both
    ``ssn``): rules match it, so a stray space or invisible character cannot slip a value past them."""
    if type(name) is not str:
        return ""  # no rule has an empty name
    return name if is_valid_field_name(name) else clean_field_name(name)


def _trie(paths: Collection[str]) -> Trie:
    """The paths as a tree of names as Pendo shows them; ``a.b`` is also kept whole, for a name that
    holds a dot."""
    root: Trie = {}
    for path in paths:
        parts = [clean_field_name(part) for part in path.split(".")]
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if child is None or child is _LEAF:
                if child is _LEAF:
                    break  # a shorter path already takes the whole value
                child = node[part] = {}
            node = child
        else:
            node[parts[-1]] = _LEAF
        if len(parts) > 1:
            root[clean_field_name(path)] = _LEAF
    return root


@dataclass(frozen=True)
class PropertyRules:
    """The configured rules (``PENDO_DENY_PROPERTIES``, ``PENDO_ALLOW_PROPERTIES``,
    ``PENDO_HASH_PROPERTIES``, ``PENDO_HASH_KEY``); the key is kept out of ``repr``."""

    deny: frozenset[str] = frozenset()
    allow: frozenset[str] = frozenset()
    hash: frozenset[str] = frozenset()
    hash_key: bytes | None = field(default=None, repr=False)
    _tries: tuple[Trie, Trie, Trie] = field(init=False, repr=False, compare=False)
    _keyed: hmac.HMAC | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tries", (_trie(self.allow), _trie(self.deny), _trie(self.hash)))
        # the key's HMAC state, prepared once: a copy per value costs about half of a new HMAC
        keyed = hmac.new(self.hash_key, digestmod="sha256") if self.hash_key is not None else None
        object.__setattr__(self, "_keyed", keyed)

    @property
    def active(self) -> bool:
        """Whether any rule is configured."""
        return bool(self.deny or self.allow or self.hash)


def keyed_hash(value: Any, key: bytes) -> Any:
    """HMAC-SHA256 (hex) of ``value``'s text under ``key``; ``None`` stays ``None``."""
    return _hashed(hmac.new(key, digestmod="sha256"), value)


def _hashed(keyed: hmac.HMAC, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(json_safe(value)[0], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = keyed.copy()
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def apply_rules(message: Mapping[str, Any], rules: PropertyRules) -> tuple[Mapping[str, Any], dict[str, int]]:
    """``message`` with the rules applied (itself when nothing changed), and how many values each rule
    touched: ``not_allowed_property``, ``denied_property``, ``hashed``, ``hash_no_key``."""
    allow, deny, hashed = rules._tries
    counts: dict[str, int] = {}
    changed: dict[str, Any] = {}
    if message.get("type") == "track":
        properties = message.get("properties")
        if isinstance(properties, Mapping):
            new = _apply(properties, allow, deny, hashed, rules._keyed, counts)
            if new is not properties:
                changed["properties"] = new
    traits = message.get("traits")
    if isinstance(traits, Mapping):
        new = _apply(traits, None, deny, hashed, rules._keyed, counts)
        if new is not traits:
            changed["traits"] = new
    context = message.get("context")
    if isinstance(context, Mapping) and isinstance(context.get("traits"), Mapping):
        new = _apply(context["traits"], None, deny, hashed, rules._keyed, counts)
        if new is not context["traits"]:
            changed["context"] = {**context, "traits": new}
    return ({**message, **changed} if changed else message), counts


def _apply(
    values: Mapping[str, Any], allow: Trie | None, deny: Trie, hashed: Trie, keyed: hmac.HMAC | None,
    counts: dict[str, int],
) -> Mapping[str, Any]:
    if allow:
        values = _allowed(values, allow, counts)
    if deny:
        values = _walk(values, deny, _remove, counts, "denied_property")
    if hashed:
        if keyed is None:
            values = _walk(values, hashed, _remove, counts, "hash_no_key")
        else:
            values = _walk(values, hashed, lambda found: _hashed(keyed, found), counts, "hashed")
    return values


_REMOVED = object()


def _remove(_: Any) -> Any:
    return _REMOVED


def _walk(values: Any, trie: Trie, change: Callable[[Any], Any], counts: dict[str, int], reason: str) -> Any:
    """``values`` with ``change`` applied where the paths of ``trie`` end (a copy only if changed)."""
    if isinstance(values, (list, tuple)):
        items = [_walk(item, trie, change, counts, reason) for item in values]
        return items if any(new is not old for new, old in zip(items, values, strict=True)) else values
    if not isinstance(values, Mapping):
        return values
    out: dict[Any, Any] | None = None
    for name, old in values.items():
        below = trie.get(_pendo_name(name))
        if below is None:
            continue
        new = change(old) if below is _LEAF else _walk(old, below, change, counts, reason)
        if new is old:
            continue
        if out is None:
            out = dict(values)
        if new is _REMOVED:
            del out[name]
        else:
            out[name] = new
        if below is _LEAF:
            counts[reason] = counts.get(reason, 0) + 1
    return values if out is None else out


def _allowed(values: Any, trie: Trie, counts: dict[str, int]) -> Any:
    """Only the paths of ``trie`` in ``values`` (a list: in each item); every value left out is counted.
    A scalar where the path expects an object is left out (``_REMOVED``)."""
    if isinstance(values, (list, tuple)):
        items = [_allowed(item, trie, counts) for item in values]
        return [item for item in items if item is not _REMOVED]
    if not isinstance(values, Mapping):
        counts["not_allowed_property"] = counts.get("not_allowed_property", 0) + 1
        return _REMOVED
    out: dict[Any, Any] = {}
    for name, old in values.items():
        below = trie.get(_pendo_name(name))
        if below is _LEAF:
            out[name] = old
        elif below is None:
            counts["not_allowed_property"] = counts.get("not_allowed_property", 0) + 1
        else:
            new = _allowed(old, below, counts)
            if new is not _REMOVED:
                out[name] = new
    return out
