"""The ``pendo-plugin`` command: ``demo``, ``doctor``, ``replay``, ``spool``, ``sandbox``, ``rollout`` and
``forget``.

Thin on purpose: each subcommand parses its flags and delegates to a module (imported only when that
subcommand runs, so ``--help`` stays fast). Every error is one sentence on stderr and a non-zero exit:
2 for a usage or input problem, 1 when a command ran and something failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from pendo_plugin import shown
from pendo_plugin.cli._common import EXIT_INTERRUPTED, EXIT_USAGE, PROG, CommandError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line instead of usage plus error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


class _EscapedFormatter(logging.Formatter):
    """A log line's message escaped (:func:`pendo_plugin.shown.escape`): one line, no terminal escapes,
    whatever text it quotes; a traceback (``--debug``) keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return shown.escape(super().formatMessage(record))


class _StderrHandler(logging.Handler):
    """The plugin's log lines on stderr, written around any tqdm progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never fail the command
            self.handleError(record)


def _setup_logging(level: int) -> None:
    logger = logging.getLogger("pendo_plugin")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_EscapedFormatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


# ----------------------------------------------------------------------------------- subcommands


def _demo(args: argparse.Namespace) -> int:
    from pendo_plugin.cli import demo

    return demo.run()


def _doctor(args: argparse.Namespace) -> int:
    from pendo_plugin.cli import doctor

    return doctor.run(traits_path=args.traits, send_test_event=args.send_test_event)


def _replay(args: argparse.Namespace) -> int:
    from pendo_plugin.cli import replay

    options = replay.ReplayOptions(
        files=args.files,
        dry_run=args.dry_run,
        since=args.since,
        until=args.until,
        calls=args.calls,
        checkpoint=args.checkpoint,
        use_checkpoint=not args.no_checkpoint,
        allow_old=args.allow_old,
        max_line_mb=args.max_line_mb,
    )
    return replay.run(options)


def _spool(args: argparse.Namespace) -> int:
    from pendo_plugin.cli import spool as spool_commands

    if args.action == "status":
        return spool_commands.spool_status()
    if args.action == "drain":
        return spool_commands.spool_drain()
    return spool_commands.spool_purge(assume_yes=args.yes)


def _forget(args: argparse.Namespace) -> int:
    from pendo_plugin.cli import forget

    return forget.run(args.visitors, assume_yes=args.yes, deny_file=args.deny_file)


def _rollout(args: argparse.Namespace) -> int:
    from pendo_plugin.cli import rollout as rollout_commands

    if args.action == "show":
        return rollout_commands.rollout_show()
    if args.action == "clear":
        return rollout_commands.rollout_clear()
    flags = {name: getattr(args, name) for name in ("enabled", "shadow", "calls", *_ID_LISTS)}
    return rollout_commands.rollout_set({**flags, "rollout_percent": args.percent})


_SANDBOX_SECRETS = {"track_secret": "PENDO_TRACK_SECRET", "integration_key": "PENDO_INTEGRATION_KEY",
                    "api_key": "PENDO_API_KEY"}


def _sandbox(args: argparse.Namespace) -> int:
    """The sandbox requires the secrets set in the environment, as the app reads them: a secret on the
    command line would be visible to every user of the host (``ps``)."""
    from pendo_plugin.sandbox import main_sandbox

    for name, variable in _SANDBOX_SECRETS.items():
        if getattr(args, name) is not None:
            raise CommandError(f"--{name.replace('_', '-')} is not accepted: a secret on the command line is "
                               f"visible to every user of this host (ps); set {variable} instead")
    secrets = {name: os.environ.get(variable) or None for name, variable in _SANDBOX_SECRETS.items()}
    schema = _read_schema(args.schema) if args.schema else None
    return main_sandbox(
        args.port, args.latency, secrets["track_secret"], secrets["integration_key"], secrets["api_key"],
        not args.no_live, schema=schema,
    )


def _read_schema(path: str) -> dict[str, dict[str, str]]:
    """``{"visitor": {"plan": "string"}, "account": {...}}`` from a JSON file."""
    import json
    from pathlib import Path

    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot read the schema file {path}: {exc.strerror}") from None
    except ValueError:
        raise CommandError(f"the schema file {path} is not JSON") from None
    valid = isinstance(schema, dict) and all(
        kind in ("visitor", "account")
        and isinstance(fields, dict)
        and all(isinstance(type_name, str) for type_name in fields.values())
        for kind, fields in schema.items()
    )
    if not valid:
        raise CommandError(f'the schema file {path} must look like {{"visitor": {{"plan": "string"}}, '
                           '"account": {...}}')
    from pendo_plugin.sandbox.rules import schema_problem

    problem = schema_problem(schema)
    if problem is not None:
        raise CommandError(f"the schema file {path}: {problem}")
    return schema


# ----------------------------------------------------------------------------------- the parser


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if not 0 < value <= 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1024 (exclusive of 0)")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


Command = Callable[[argparse.Namespace], int]


def _add(subparsers: argparse._SubParsersAction, name: str, run: Command, text: str) -> _Parser:
    parser: _Parser = subparsers.add_parser(name, help=text, description=text)
    parser.set_defaults(run=run)
    return parser


def _add_doctor(subparsers: argparse._SubParsersAction) -> None:
    parser = _add(subparsers, "doctor", _doctor, "Check the configuration and the keys against Pendo.")
    parser.add_argument("--traits", metavar="FILE", help="identify/group messages or trait dicts (JSON "
                        "object or JSON lines): list the traits that have no field in Pendo")
    parser.add_argument("--send-test-event", action="store_true", help="verify PENDO_TRACK_SECRET by "
                        "sending the track event pendo_plugin_doctor for visitor pendo-plugin-doctor")


def _add_replay(subparsers: argparse._SubParsersAction) -> None:
    parser = _add(subparsers, "replay", _replay, "Send a Segment export (JSON lines, .gz too) to Pendo.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="export files; - reads stdin")
    parser.add_argument("--dry-run", action="store_true", help="route and count, send nothing")
    parser.add_argument("--since", metavar="ISO", help="only messages at or after this time")
    parser.add_argument("--until", metavar="ISO", help="only messages before this time")
    parser.add_argument("--calls", default="identify,group,track", help="which calls to replay "
                        "(default: identify,group,track)")
    parser.add_argument("--checkpoint", metavar="PATH", help="where to record progress "
                        "(default: FILE.pendo-checkpoint next to each file)")
    parser.add_argument("--no-checkpoint", action="store_true", help="do not read or write a checkpoint")
    parser.add_argument("--allow-old", action="store_true", help="send track events older than "
                        "PENDO_MAX_EVENT_AGE_DAYS too (backfills)")
    parser.add_argument("--max-line-mb", type=_positive, default=4.0, metavar="MB", help="skip and report "
                        "lines longer than this (default: 4)")


def _add_spool(subparsers: argparse._SubParsersAction) -> None:
    parser = _add(subparsers, "spool", _spool, "Inspect, send or delete what waits in PENDO_SPOOL_DIR.")
    parser.add_argument("action", choices=("status", "drain", "purge"))
    parser.add_argument("--yes", action="store_true", help="purge without asking")


def _add_forget(subparsers: argparse._SubParsersAction) -> None:
    parser = _add(subparsers, "forget", _forget, "Remove every waiting payload of these visitors from the "
                  "spool and, in fleet mode, the Redis stream (nothing is sent to Pendo).")
    parser.add_argument("visitors", nargs="+", metavar="VISITOR", help="visitor ids, a,b, or @file "
                        "(one a line)")
    parser.add_argument("--yes", action="store_true", help="remove without asking")
    parser.add_argument("--deny-file", metavar="PATH", help="append the ids to PATH, for "
                        "PENDO_DENY_VISITORS=@PATH")


_ID_LISTS = (
    "allow_visitors", "deny_visitors", "allow_accounts", "deny_accounts", "allow_events", "deny_events"
)


def _add_rollout(subparsers: argparse._SubParsersAction) -> None:
    parser = _add(subparsers, "rollout", _rollout, "Show or set the fleet's live rollout flags in "
                  "PENDO_REDIS_URL (every process applies them within 5 s).")
    parser.add_argument("action", choices=("show", "set", "clear"))
    parser.add_argument("--enabled", metavar="true|false", help="the fleet's kill switch")
    parser.add_argument("--percent", metavar="N", help="rollout percent, 0-100")
    parser.add_argument("--shadow", metavar="true|false", help="translate and count, send nothing")
    parser.add_argument("--calls", metavar="LIST", help="which of identify,group,track to write")
    for name in _ID_LISTS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="LIST", help="comma-separated")


def _add_sandbox(subparsers: argparse._SubParsersAction) -> None:
    parser = _add(subparsers, "sandbox", _sandbox, "Run a local Pendo stand-in that records and checks "
                  "what it receives; it requires the secrets set in PENDO_TRACK_SECRET, "
                  "PENDO_INTEGRATION_KEY and PENDO_API_KEY.")
    parser.add_argument("--port", type=_port, default=8787, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--latency", type=_non_negative, default=0.0, help="seconds added to every answer")
    for name in _SANDBOX_SECRETS:  # refused with a pointer to the variable (the secrets come from it)
        parser.add_argument(f"--{name.replace('_', '-')}", help=argparse.SUPPRESS)
    parser.add_argument("--schema", metavar="FILE", help='custom fields as JSON, e.g. {"visitor": {"plan": '
                        '"string"}, "account": {"seats": "number"}} (default: any field is accepted)')
    parser.add_argument("--no-live", action="store_true", help="no live table of counts")


def build_parser() -> argparse.ArgumentParser:
    """The ``pendo-plugin`` argument parser."""
    parser = _Parser(prog=PROG, description="Operator tools for the Segment -> Pendo plugin.")
    parser.add_argument("--debug", action="store_true", help="show the plugin's log and full tracebacks")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add(subparsers, "demo", _demo, "Show the plugin end to end against an embedded sandbox.")
    _add_doctor(subparsers)
    _add_replay(subparsers)
    _add_spool(subparsers)
    _add_sandbox(subparsers)
    _add_rollout(subparsers)
    _add_forget(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pendo-plugin``; returns the exit status."""
    args = build_parser().parse_args(argv)
    _setup_logging(logging.DEBUG if args.debug else logging.WARNING)
    try:
        return int(args.run(args))
    except CommandError as exc:
        print(f"{PROG}: {shown.escape(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `pendo-plugin demo | head`: stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if args.debug:
            raise
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {shown.escape(exc, 300)} (rerun with --debug "
              "for details)", file=sys.stderr)
        return 1
