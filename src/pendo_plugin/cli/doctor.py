"""``pendo-plugin doctor``: the effective configuration, then one OK/FAIL line per check against Pendo.

It talks to Pendo through the same :class:`~pendo_plugin.delivery.client.HttpTransport` the live path
uses (in its own ``asyncio.run``), so proxies (``HTTPS_PROXY``, read from the environment), TLS and
the User-Agent are exactly what the app's traffic will meet, and the field schemas are read by the very
function the senders use (:func:`~pendo_plugin.delivery.schema.fetch_schema`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pendo_plugin import config, shown
from pendo_plugin.cli import doctor_sources
from pendo_plugin.cli._common import Check, CommandError, fail, ok, quiet_logs, skip
from pendo_plugin.config import Settings
from pendo_plugin.delivery.answers import read_json
from pendo_plugin.delivery.http import Request, Response, Transport
from pendo_plugin.delivery.schema import fetch_schema
from pendo_plugin.pendo.property_rules import PropertyRules, apply_rules
from pendo_plugin.pendo.sanitize import clean_metadata_values
from pendo_plugin.segment import sdks

TEST_EVENT = "pendo_plugin_doctor"
TEST_VISITOR = "pendo-plugin-doctor"
KEY_HEADER = "x-pendo-integration-key"
KINDS = ("visitor", "account")
DATA_MAPPINGS = "add it under Settings > Data Mappings"
REACH_TIMEOUT = 10.0


class Recorder:
    """A transport wrapper remembering the last answer, so a check can say *why* a call failed."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.status: int | None = None
        self.error: str | None = None

    async def send(self, request: Request) -> Response:
        self.status, self.error = None, None
        try:
            response = await self.transport.send(request)
        except Exception as exc:
            self.error = _reason(exc)
            raise
        self.status = response.status
        return response

    async def close(self) -> None:
        await self.transport.close()

    def why(self) -> str:
        """``HTTP 404`` or the network error of the last call."""
        return f"HTTP {self.status}" if self.status is not None else self.error or "no answer"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# ----------------------------------------------------------------------------------- traits file


@dataclass(frozen=True)
class Traits:
    """Trait names seen per kind: Pendo field name -> the trait name as written (they differ when cleaned)."""

    visitor: dict[str, str]
    account: dict[str, str]

    def of(self, kind: str) -> dict[str, str]:
        """The traits of ``kind`` (``visitor`` or ``account``)."""
        return self.visitor if kind == "visitor" else self.account


def _documents(path: str) -> Iterator[tuple[int, Any]]:
    """(line number, JSON value) from a JSON document or JSON lines; raises CommandError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CommandError(f"cannot read the traits file {path}: {reason}") from None
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    else:
        yield from enumerate(whole if isinstance(whole, list) else [whole], 1)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except ValueError:
                raise CommandError(f"the traits file {path}, line {number}, is not JSON") from None


def _kind_and_traits(value: Any) -> tuple[str, Any] | None:
    """An identify/group message's traits, or a bare trait dict (visitor traits)."""
    if not isinstance(value, dict):
        return None
    call = value.get("type")
    if call in ("identify", "group"):
        return ("visitor" if call == "identify" else "account"), value.get("traits")
    if call is not None:
        return None  # track, page, ...: no traits
    return "visitor", value.get("traits", value)


def read_traits(documents: list[Any], rules: PropertyRules) -> Traits:
    """The traits in ``documents``, named as the plugin would send them (the property rules applied and
    names cleaned, like the live path)."""
    found: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for value in documents:
        parsed = _kind_and_traits(value)
        if parsed is None or not isinstance(parsed[1], dict):
            continue
        kind, traits = parsed
        traits = apply_rules({"type": "identify", "traits": traits}, rules)[0]["traits"]
        for original in traits:
            cleaned, _ = clean_metadata_values({original: traits[original]})
            for name in cleaned:
                found[kind].setdefault(name, str(original))
    return Traits(found["visitor"], found["account"])


# ----------------------------------------------------------------------------------- checks


def config_checks(settings: Settings, sources: dict[str, str] | None = None) -> list[Check]:
    """Problems in the PENDO_* variables, each naming its variable (and where a switch was set)."""
    if settings.problems:
        return [fail(f"configuration: {problem}") for problem in settings.problems]
    if not settings.rollout.enabled:
        source = (sources or {}).get("enabled", "environment")
        return [fail(f"configuration: PENDO_ENABLED is false (set by {source}), so nothing is sent to Pendo")]
    missing = config.missing_secret(settings)
    if missing is not None:
        return [fail(f"configuration: no secret is set ({missing}), so nothing is sent to Pendo")]
    return [ok("configuration: every PENDO_* variable is valid")]


_STILL_USED = {  # a secret that is set is used, however it looks: what then happens to the payloads
    "track": "the plugin still sends with it, and Pendo refuses it: auth_failed:*:track, kept in the spool",
    "webhook": "the plugin still sends with it, to an address Pendo does not know",
}


def _format_problem(name: str, secret: str | None) -> str | None:
    if not secret:
        return f"{name} is not set"
    if any(ch.isspace() for ch in secret):
        return f"{name} contains whitespace (a copy-paste slip?)"
    if not secret.isascii() or not secret.isprintable():
        return f"{name} contains characters a Pendo secret never has"
    if len(secret) < 8:
        return f"{name} is too short to be a Pendo secret"
    return None


def track_secret_format(settings: Settings) -> Check:
    """The track secret is set and looks like one (no request is made)."""
    problem = _format_problem("PENDO_TRACK_SECRET", settings.track_secret)
    if problem:
        effect = "track events are off" if not settings.track_secret else _STILL_USED["track"]
        return fail(f"{problem}: {effect} (it is the Track Event Shared Secret under "
                    "Subscription Settings > Applications > App Details)")
    if settings.track_secret == settings.integration_key:
        return fail("PENDO_TRACK_SECRET equals PENDO_INTEGRATION_KEY: the track secret is the app's Track "
                    "Event Shared Secret, not an integration key")
    return ok("PENDO_TRACK_SECRET is set and well-formed (not sent; --send-test-event verifies it)")


def api_key_format(settings: Settings) -> Check:
    """Webhook mode: the public API key is set and fits in a URL path."""
    problem = _format_problem("PENDO_API_KEY", settings.api_key)
    if problem is None and "/" in (settings.api_key or ""):
        problem = "PENDO_API_KEY contains '/'"
    if not problem:
        return ok("PENDO_API_KEY is set")
    effect = "PENDO_MODE=webhook sends nothing" if not settings.api_key else _STILL_USED["webhook"]
    return fail(f"{problem}: {effect}")


def _label(settings: Settings, name: str) -> str:
    url = getattr(settings, name)
    variable = config.ENV_NAMES.get(name, "PENDO_DATA_URL")
    region_default = config.REGIONS[settings.region][0 if name != "webhook_url" else 1]
    return f"{variable} {url}" if url != region_default else f"region {settings.region} ({url})"


async def reachable(transport: Recorder, settings: Settings, name: str) -> Check:
    """Any HTTP answer from the host counts: the network path (DNS, TLS, proxy) works."""
    label = _label(settings, name)
    started = time.monotonic()
    try:
        await transport.send(Request("GET", getattr(settings, name) + "/", timeout=REACH_TIMEOUT))
    except Exception:
        return fail(f"{label} is not reachable: {transport.why()}")
    return ok(f"{label} is reachable ({transport.why()} in {(time.monotonic() - started) * 1000:.0f} ms)")


async def verify_key(transport: Recorder, settings: Settings) -> Check:
    """GET /api/v1/token/verify: the integration key is valid and may write."""
    if not settings.integration_key:
        return fail("PENDO_INTEGRATION_KEY is not set: visitor and account metadata are off")
    request = Request("GET", f"{settings.api_url}/api/v1/token/verify",
                      headers={KEY_HEADER: settings.integration_key}, timeout=settings.request_timeout)
    try:
        response = await transport.send(request)
    except Exception:
        return fail(f"PENDO_INTEGRATION_KEY could not be verified: {transport.why()}")
    if response.status in (401, 403):
        return fail(f"PENDO_INTEGRATION_KEY is not valid (HTTP {response.status} from /api/v1/token/verify)")
    answer = read_json(response.body)
    if response.status != 200 or not isinstance(answer, dict):
        unreadable = " with an answer that could not be read" if response.status == 200 else ""
        return fail(f"PENDO_INTEGRATION_KEY could not be verified: /api/v1/token/verify answered "
                    f"HTTP {response.status}{unreadable}")
    if not answer.get("valid"):
        return fail("PENDO_INTEGRATION_KEY is not valid (Pendo answered valid=false)")
    if not answer.get("writeAccess"):
        return fail("PENDO_INTEGRATION_KEY has no write access: tick 'Allow write access' for it under "
                    "Settings > Integrations > Integration Keys")
    return ok("PENDO_INTEGRATION_KEY is valid, with write access")


async def send_test_event(transport: Recorder, settings: Settings) -> Check:
    """POST one track event ``pendo_plugin_doctor`` for visitor ``pendo-plugin-doctor``."""
    body = {"type": "track", "event": TEST_EVENT, "visitorId": TEST_VISITOR,
            "timestamp": int(time.time() * 1000), "properties": {"source": "pendo_plugin_doctor"},
            "context": {}}
    request = Request("POST", f"{settings.data_url}/data/track", json.dumps(body).encode(),
                      {"Content-Type": "application/json", KEY_HEADER: settings.track_secret or ""},
                      settings.request_timeout)
    try:
        response = await transport.send(request)
    except Exception:
        return fail(f"the test event could not be sent: {transport.why()}")
    if response.status in (401, 403):
        return fail(f"PENDO_TRACK_SECRET is not valid (HTTP {response.status} from /data/track)")
    if not 200 <= response.status < 300:
        return fail(f"the test event was refused: /data/track answered HTTP {response.status}")
    return ok(f"PENDO_TRACK_SECRET accepted: sent track event {TEST_EVENT} for visitor {TEST_VISITOR}")


SHOWN_NAME_CHARS = 60
"""The most of a field's name (and of its type) a check shows: Pendo's answer sets their length."""


def _field_list(fields: dict[str, str], limit: int = 8) -> str:
    names = [
        f"{shown.escape(name, SHOWN_NAME_CHARS)}:{shown.escape(kind, SHOWN_NAME_CHARS)}"
        for name, kind in sorted(fields.items())
    ]
    more = f", and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


Fields = dict[str, str]


async def read_schema(transport: Recorder, settings: Settings, kind: str) -> tuple[Check, Fields | None]:
    """The custom field schema of ``kind``, read like the senders read it."""
    fields = await fetch_schema(transport, settings, kind)
    if fields is None:
        return fail(f"{kind} field schema could not be read ({transport.why()}): metadata would be sent "
                    "unchecked, and Pendo refuses a row whose field does not exist"), None
    if not fields:
        return ok(f"{kind} field schema: no custom fields yet ({DATA_MAPPINGS} for each trait)"), fields
    return ok(f"{kind} field schema: {len(fields)} custom field(s): {_field_list(fields)}"), fields


def trait_checks(traits: Traits, schemas: dict[str, dict[str, str] | None]) -> list[Check]:
    """One FAIL per trait without a Pendo field, or one OK per kind."""
    checks: list[Check] = []
    for kind in KINDS:
        seen = traits.of(kind)
        if not seen:
            continue
        fields = schemas.get(kind)
        if fields is None:
            checks.append(skip(f"{kind} traits not checked: the {kind} field schema could not be read"))
            continue
        missing = [name for name in sorted(seen) if name not in fields]
        for name in missing:
            written = "" if seen[name] == name else f" (written {seen[name]!r})"
            checks.append(fail(f"{kind} trait {name!r}{written} has no field in Pendo: {DATA_MAPPINGS}"))
        if not missing:
            checks.append(ok(f"{kind} traits: all {len(seen)} have a field in Pendo"))
    return checks


# ----------------------------------------------------------------------------------- running


async def network_checks(settings: Settings, traits: Traits | None, test_event: bool) -> list[Check]:
    """Every check that talks to Pendo, in order; later ones are skipped when an earlier one fails."""
    from pendo_plugin.delivery.client import HttpTransport

    transport = Recorder(settings.transport or HttpTransport(4, settings.ca_bundle))
    try:
        checks = await _data_checks(transport, settings, test_event)
        if settings.mode != "webhook" or settings.integration_key:
            data_host = checks[1]  # _data_checks: [secret, host, ...]
            checks += await _api_checks(transport, settings, traits, data_host_ok=data_host.status == "OK")
        return checks
    finally:
        if settings.transport is None:
            await transport.close()


def _data_host(settings: Settings) -> str:
    return "webhook_url" if settings.mode == "webhook" else "data_url"


async def _data_checks(transport: Recorder, settings: Settings, test_event: bool) -> list[Check]:
    """The secret for events, the host they go to, and (on request) one real test event."""
    webhook = settings.mode == "webhook"
    secret = api_key_format(settings) if webhook else track_secret_format(settings)
    host = await reachable(transport, settings, _data_host(settings))
    checks = [secret, host]
    if test_event:
        from pendo_plugin.cli.doctor_webhook import send_test_webhook

        usable = host.status == "OK" and secret.status == "OK"
        send = send_test_webhook if webhook else send_test_event
        checks.append(await send(transport, settings) if usable
                      else skip("test event not sent: see the failures above"))
    return checks


async def _api_checks(
    transport: Recorder, settings: Settings, traits: Traits | None, *, data_host_ok: bool
) -> list[Check]:
    """The /api/v1 host, the integration key, the field schemas and the traits against them."""
    checks = []
    host = await reachable(transport, settings, "api_url")
    if settings.api_url != getattr(settings, _data_host(settings)) or (host.status != "OK" and data_host_ok):
        checks.append(host)  # the same host as the data host is reported once, unless only this try failed
    if host.status != "OK":
        return [*checks, skip("integration key, field schemas and traits not checked: host unreachable")]
    key = await verify_key(transport, settings)
    checks.append(key)
    if key.status != "OK":
        return [*checks, skip("field schemas and traits not checked: PENDO_INTEGRATION_KEY is not usable")]
    schemas: dict[str, Fields | None] = {}
    for kind in KINDS:
        check, schemas[kind] = await read_schema(transport, settings, kind)
        checks.append(check)
    return checks + (trait_checks(traits, schemas) if traits is not None else [])


def _print_configuration(settings: Settings, out: TextIO, sources: dict[str, str]) -> None:
    if settings.problems:  # the settings are a placeholder then: show what the environment says instead
        variables = {var: os.environ[var] for var in config.ENV_NAMES.values() if var in os.environ}
        secrets = {config.ENV_NAMES[name] for name in (*config.SECRET_FIELDS, "hash_key")}
        print("Configuration is not usable; the PENDO_* variables set (secrets masked):", file=out)
        for var, value in variables.items():
            shown_value = config.mask(value) if var in secrets else _shown_value(var, value)
            print(f"  {var}={shown_value}", file=out)
        return
    described = settings.describe().items()
    listed = {name: "(off)" if value is None else shown.escape(value) for name, value in described}
    width = max(len(name) for name in listed)
    values = max(len(value) for value in listed.values())
    print("Configuration (secrets masked; where each value comes from):", file=out)
    for name, value in listed.items():
        print(f"  {name:<{width}}  {value:<{values}}  {sources.get(name, 'derived')}".rstrip(), file=out)


def _shown_value(variable: str, value: str) -> str:
    """A variable's value as printed: a URL through :func:`pendo_plugin.shown.url`, the rest escaped."""
    return (shown.url(value) or "") if variable.endswith("_URL") else shown.escape(value)


def _print_checks(checks: list[Check], out: TextIO) -> None:
    print("\nChecks:", file=out)
    for check in checks:  # a check's text may quote Pendo's answers (field names): escaped
        print(f"  {check.status:<5} {shown.escape(check.text)}", file=out)
    failed = sum(check.status == "FAIL" for check in checks)
    print("\nAll checks passed." if not failed else f"\n{failed} check(s) failed.", file=out)


def run(traits_path: str | None = None, send_test_event: bool = False, out: TextIO | None = None) -> int:
    """Print the configuration and the checks; 0 when every check passed, 1 otherwise."""
    out = out or sys.stdout
    documents = [value for _, value in _documents(traits_path)] if traits_path else None
    with quiet_logs():  # every problem the plugin would log becomes a FAIL line instead
        config.current()  # loaded quietly: the exit hook reads it rather than logging it after the report
        flags = doctor_sources.fleet_flags(config.load().redis_url)
        settings, sources = doctor_sources.effective(flags), doctor_sources.sources(flags)
        _print_configuration(settings, out, sources)
        traits = read_traits(documents, settings.properties) if documents is not None else None
        print("\nSDKs found and patched:", *(f"  {line}" for line in sdks.survey()), sep="\n", file=out)
        checks = config_checks(settings, sources)
        if not settings.problems:
            from pendo_plugin.cli.privacy_checks import privacy_checks

            checks += privacy_checks(settings, documents)
        if not settings.problems:
            checks += asyncio.run(network_checks(settings, traits, send_test_event))
        if not settings.problems and (settings.redis_url or settings.redis_url_problem):  # fleet mode
            from pendo_plugin.cli.fleet_doctor import doctor_checks

            checks += doctor_checks(settings)
    _print_checks(checks, out)
    return 0 if all(check.status != "FAIL" for check in checks) else 1
