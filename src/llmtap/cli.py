"""llmtap: an LLM observability gateway — proxy, durable log queue, consumer, stores, query API."""

# Each command builds the settings once and hands them to the module that does the work. Those
# modules, and pydantic with the settings model, are imported only once a command runs, so
# ``llmtap --help`` and ``llmtap mock-upstream`` start fast (tests/unit/test_cli.py guards it).

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmtap.cli_commands import (
    cmd_api,
    cmd_consume,
    cmd_migrate,
    cmd_proxy,
    cmd_replay,
    cmd_request,
    cmd_requests,
    cmd_seed,
    cmd_serve,
    mock_upstream,
)
from llmtap.cli_groups import (
    HelpFormatter,
    add_alerts,
    add_keys,
    add_seed,
    add_webhooks,
    leaves,
)
from llmtap.cli_options import SettingOption, parse_json, setting_options

if TYPE_CHECKING:
    from llmtap.settings import Settings

GLOBAL_SECTIONS = ("general", "adapters")
"""Sections of ``settings.py`` every command that reads settings takes, before or after its name."""
ALIASES: Mapping[str, tuple[str, ...]] = {
    "queue_url": ("--queue",),
    "records_url": ("--records",),
    "analytics_url": ("--analytics",),
    "bodies_url": ("--bodies",),
}
"""Short spellings of global options."""

EPILOG = (
    "Settings come from a TOML file (--config or $LLMTAP_CONFIG), then LLMTAP_* environment "
    "variables, then options, the later winning. Global options go before or after the command. "
    "`llmtap <command> --help` lists a command's options."
)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace, Settings], int] | None
    sections: tuple[str, ...] = ()
    """Sections of ``settings.py`` whose fields this command takes as options."""
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Short spellings of its settings options (``--port`` for ``--proxy-port``)."""
    reads_settings: bool = True


_PROXY_ALIASES: Mapping[str, tuple[str, ...]] = {
    "proxy_host": ("--host",),
    "proxy_port": ("--port",),
    "proxy_processes": ("--processes",),
}
COMMANDS: tuple[Command, ...] = (
    Command(
        "serve",
        "Run the whole gateway on one machine: proxy, consumer and API, supervised.",
        cmd_serve,
        ("proxy", "queue", "consumer", "analytics", "api", "cost", "demo"),
        _PROXY_ALIASES,
    ),
    Command(
        "proxy",
        "Run only the proxy (the hot path); it publishes to the queue.",
        cmd_proxy,
        ("proxy", "queue"),
        _PROXY_ALIASES,
    ),
    Command(
        "consume",
        "Run only a consumer: queue to records and analytics stores.",
        cmd_consume,
        ("queue", "consumer", "analytics", "cost"),
    ),
    Command(
        "api",
        "Run only the query, metrics and ingestion API.",
        cmd_api,
        ("queue", "api"),
        {"api_host": ("--host",), "api_port": ("--port",)},
    ),
    Command(
        "replay",
        "Consume the logs again from an offset or a time, or re-drive dead letters.",
        cmd_replay,
        ("queue", "consumer", "analytics", "cost"),
    ),
    Command("requests", "List the latest logged calls.", cmd_requests),
    Command("request", "Show one logged call with its bodies.", cmd_request),
    Command("migrate", "Bring the records and analytics schemas up to date.", cmd_migrate),
    Command("keys", "Manage llmtap API keys (create, list, revoke).", None),
    Command("webhooks", "Manage an organization's webhooks (add, list, rm).", None),
    Command("alerts", "Manage an organization's alert rules (add, list, rm).", None),
    Command(
        "seed",
        "Write N realistic synthetic calls straight into the stores (benchmarks, screenshots).",
        cmd_seed,
        ("analytics", "cost"),
    ),
    Command(
        "mock-upstream",
        "Run a fake OpenAI/Anthropic server (tests, benchmarks, trying llmtap offline).",
        None,
        reads_settings=False,
    ),
)


def _json_value(value: str) -> Any:
    try:
        return parse_json(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_setting(
    group: argparse._ArgumentGroup, option: SettingOption, aliases: tuple[str, ...]
) -> None:
    # SUPPRESS: an option left out sets nothing, so a global option given before the command is
    # not overwritten by the command's own (absent) copy of it, and the environment still counts
    flags = [option.flag, *aliases]
    common: dict[str, Any] = {
        "dest": option.name,
        "default": argparse.SUPPRESS,
        "help": option.help(),
    }
    if option.kind == "bool":
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        return
    converters: dict[str, Callable[[str], Any]] = {
        "int": int,
        "float": float,
        "json": _json_value,
        "choice": str.upper,
    }
    metavar = {
        "int": "N",
        "float": "SECONDS" if option.name.endswith("_s") else "X",
        "json": "JSON",
        "path": "DIR",
        "str": option.name.rsplit("_", 1)[-1].upper(),
    }.get(option.kind)
    group.add_argument(
        *flags,
        type=converters.get(option.kind, str),
        choices=option.choices or None,
        metavar=metavar if not option.choices else None,
        **common,
    )


def _add_globals(parser: argparse.ArgumentParser, options: Sequence[SettingOption]) -> None:
    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="TOML settings file, keys as the settings' names [$LLMTAP_CONFIG; default: none]",
    )
    for option in options:
        if option.section in GLOBAL_SECTIONS:
            _add_setting(group, option, ALIASES.get(option.name, ()))


def _add_settings(
    parser: argparse.ArgumentParser, command: Command, options: Sequence[SettingOption]
) -> None:
    for section in command.sections:
        group = parser.add_argument_group(f"{section} settings")
        for option in options:
            if option.section == section:
                _add_setting(group, option, command.aliases.get(option.name, ()))


def _add_command_arguments(
    parser: argparse.ArgumentParser,
    command: Command,
    options: Sequence[SettingOption],
) -> None:
    if command.name == "replay":
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument(
            "--from-offset", type=int, default=None, metavar="N", help="re-read from this offset"
        )
        where.add_argument(
            "--from-time", default=None, metavar="ISO", help="re-read from this time (UTC)"
        )
        where.add_argument("--dlq", action="store_true", help="re-drive the dead-letter topic")
        parser.add_argument(
            "--partition",
            type=int,
            action="append",
            metavar="P",
            help="with --from-offset: only this partition (repeatable; default: all)",
        )
        parser.add_argument(
            "--follow", action="store_true", help="with --dlq: keep running, with backoff"
        )
        parser.add_argument(
            "--idle-s",
            type=float,
            default=3.0,
            metavar="SECONDS",
            help="caught up after this long without new records (default: 3.0)",
        )
    elif command.name == "requests":
        parser.add_argument(
            "--limit", type=int, default=20, metavar="N", help="how many (default: 20)"
        )
        parser.add_argument("--json", action="store_true", help="one JSON document per call")
    elif command.name == "request":
        parser.add_argument("request_id", help="the call's id (its Helicone-Id header)")
        parser.add_argument("--json", action="store_true", help="as one JSON document")
    elif command.name in ("keys", "webhooks", "alerts"):
        add_group = {"keys": add_keys, "webhooks": add_webhooks, "alerts": add_alerts}
        add_group[command.name](
            leaves(
                parser,
                command.name,
                lambda p: _add_globals(p, options),
                with_org=command.name != "keys",
            )
        )
    elif command.name == "seed":
        add_seed(parser)
    elif command.name == "mock-upstream":
        parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
        parser.add_argument("--port", type=int, default=9999, help="port (default: 9999)")
        parser.add_argument(
            "--latency-ms",
            type=float,
            default=0.0,
            metavar="MS",
            help="delay before each response (default: 0)",
        )
        parser.add_argument(
            "--chunk-delay-ms",
            type=float,
            default=0.0,
            metavar="MS",
            help="delay between SSE chunks (default: 0)",
        )
        parser.add_argument(
            "--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate chain"
        )
        parser.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")


def build_parser() -> argparse.ArgumentParser:
    options = setting_options()
    parser = argparse.ArgumentParser(
        prog="llmtap",
        usage="llmtap [global options] <command> [options]",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, title="commands", metavar="<command>"
    )
    _add_globals(parser, options)
    for command in COMMANDS:
        p = sub.add_parser(
            command.name,
            prog=f"llmtap {command.name}",
            help=command.help,
            description=command.help,
            usage=f"llmtap {command.name} [options]"
            + (" <command>" if command.name in ("keys", "webhooks", "alerts") else ""),
            formatter_class=HelpFormatter,
        )
        p.set_defaults(command_spec=command, run=command.run)
        if command.reads_settings:
            _add_globals(p, options)
        _add_settings(p, command, options)
        _add_command_arguments(p, command, options)
    return parser


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as options (only those given: the rest come from file or env)."""
    return {o.name: getattr(args, o.name) for o in setting_options() if hasattr(args, o.name)}


def load_from_args(args: argparse.Namespace) -> Settings:
    from llmtap.settings import load_settings

    config = getattr(args, "config", None) or os.environ.get("LLMTAP_CONFIG") or None
    return load_settings(Path(config) if config else None, **settings_overrides(args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args.command_spec
    from llmtap.logs import configure_logging
    from llmtap.private_files import private_root, restrict_umask

    if not command.reads_settings:
        if settings_overrides(args) or hasattr(args, "config"):
            parser.error(f"{command.name} takes no settings options")
        configure_logging()
        return mock_upstream(args)
    settings = _settings_or_exit(parser, args)
    configure_logging(settings.log_level)
    # whatever this process or its children write (chDB, SQLite journals, ours) is owner-only
    restrict_umask()
    # every command that reads settings stores under, or reads from, the data directory
    private_root(settings.data_dir.absolute())
    result: int = args.run(args, settings)
    return result


def _settings_or_exit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    import tomllib

    from pydantic import ValidationError

    try:
        return load_from_args(args)
    except ValidationError as exc:
        parser.error(f"invalid settings:\n{exc}")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        parser.error(f"cannot read the settings file: {exc}")


if __name__ == "__main__":
    sys.exit(main())
