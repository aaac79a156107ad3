"""The one entry point: ``llmtap <command>``.

Each command builds the settings once and hands them to the module that does the work; the
modules are imported lazily so ``llmtap mock-upstream`` does not pay for SQLAlchemy or chDB.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmtap.logs import configure_logging
from llmtap.private_files import private_root, restrict_umask
from llmtap.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in (
        "data_dir",
        "queue_url",
        "records_url",
        "analytics_url",
        "bodies_url",
        "api_host",
        "api_port",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    for flag, name in (
        ("port", "proxy_port"),
        ("host", "proxy_host"),
        ("processes", "proxy_processes"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[name] = value
    settings = load_settings(args.config, **overrides)
    # every command that reads settings stores under, or reads from, the data directory
    private_root(settings.data_dir.absolute())
    return settings


def _cmd_serve(args: argparse.Namespace) -> int:
    from llmtap.serve import serve

    return serve(_settings(args))


def _cmd_proxy(args: argparse.Namespace) -> int:
    from llmtap.proxy.server import run_proxy

    run_proxy(_settings(args))
    return 0


def _cmd_consume(args: argparse.Namespace) -> int:
    from llmtap.consumer.service import run_consumer_until_signalled

    return run_consumer_until_signalled(_settings(args))


def _cmd_replay(args: argparse.Namespace) -> int:
    from llmtap.consumer.replay_cli import run_replay_command

    return run_replay_command(
        _settings(args),
        from_offset=args.from_offset,
        partitions=args.partition,
        from_time=args.from_time,
        dlq=args.dlq,
        follow=args.follow,
        idle_s=args.idle_s,
    )


def _cmd_mock_upstream(args: argparse.Namespace) -> int:
    from llmtap.testing.mock_upstream import run_mock_upstream

    run_mock_upstream(
        host=args.host or "127.0.0.1",
        port=args.port or 9999,
        latency_ms=args.latency_ms,
        chunk_delay_ms=args.chunk_delay_ms,
    )
    return 0


def _cmd_requests(args: argparse.Namespace) -> int:
    from llmtap.show import print_requests

    return print_requests(_settings(args), limit=args.limit, as_json=args.json)


def _cmd_request(args: argparse.Namespace) -> int:
    from llmtap.show import print_request

    return print_request(_settings(args), args.request_id, as_json=args.json)


def _cmd_api(args: argparse.Namespace) -> int:
    from llmtap.api.server import run_api

    return run_api(_settings(args))


def _cmd_keys_create(args: argparse.Namespace) -> int:
    from llmtap.api.admin import create_key

    return create_key(_settings(args), org_id=args.org, new_org=args.new_org, name=args.name)


def _cmd_keys_list(args: argparse.Namespace) -> int:
    from llmtap.api.admin import list_keys

    return list_keys(_settings(args), org_id=args.org, as_json=args.json)


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    from llmtap.api.admin import revoke_key

    return revoke_key(_settings(args), args.key_id)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from llmtap.api.admin import migrate

    return migrate(_settings(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmtap", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="TOML settings file")
    parser.add_argument("--data-dir", dest="data_dir", type=Path, default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        return p

    for name, func, help_ in (
        ("serve", _cmd_serve, "run proxy + consumer (+ api) on embedded defaults"),
        ("proxy", _cmd_proxy, "run only the proxy (hot path)"),
        ("consume", _cmd_consume, "run only the consumer"),
    ):
        p = command(name, func, help_)
        p.add_argument("--host", default=None)
        p.add_argument("--port", type=int, default=None)
        p.add_argument("--processes", type=int, default=None, help="proxy processes")
        p.add_argument("--queue", dest="queue_url", default=None)
        p.add_argument("--records", dest="records_url", default=None)
        p.add_argument("--analytics", dest="analytics_url", default=None)
        p.add_argument("--bodies", dest="bodies_url", default=None)

    p = command("replay", _cmd_replay, "consume the logs again, or re-drive dead letters")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-offset", dest="from_offset", type=int, default=None)
    where.add_argument("--from-time", dest="from_time", default=None, help="ISO 8601 (UTC)")
    where.add_argument("--dlq", action="store_true", help="re-drive the dead-letter topic")
    p.add_argument("--partition", type=int, action="append", help="with --from-offset")
    p.add_argument("--follow", action="store_true", help="with --dlq: keep running, with backoff")
    p.add_argument("--idle-s", dest="idle_s", type=float, default=3.0, help="caught up after")
    p.add_argument("--queue", dest="queue_url", default=None)
    p.add_argument("--records", dest="records_url", default=None)
    p.add_argument("--analytics", dest="analytics_url", default=None)
    p.add_argument("--bodies", dest="bodies_url", default=None)

    p = command("mock-upstream", _cmd_mock_upstream, "a fake OpenAI/Anthropic server for tests")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before the response")
    p.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between SSE chunks")

    p = command("requests", _cmd_requests, "list the latest logged calls")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.add_argument("--records", dest="records_url", default=None)

    p = command("request", _cmd_request, "show one logged call with its bodies")
    p.add_argument("request_id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--records", dest="records_url", default=None)
    p.add_argument("--bodies", dest="bodies_url", default=None)

    p = command("api", _cmd_api, "run only the query & metrics API")
    p.add_argument("--host", dest="api_host", default=None)
    p.add_argument("--port", dest="api_port", type=int, default=None)
    p.add_argument("--queue", dest="queue_url", default=None, help="for ingestion routes")
    p.add_argument("--records", dest="records_url", default=None)
    p.add_argument("--analytics", dest="analytics_url", default=None)
    p.add_argument("--bodies", dest="bodies_url", default=None)

    p = command("migrate", _cmd_migrate, "bring the records/analytics schemas up to date")
    p.add_argument("--records", dest="records_url", default=None)
    p.add_argument("--analytics", dest="analytics_url", default=None)

    keys = command("keys", lambda _args: 2, "manage llmtap API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    p = keys_sub.add_parser("create", help="create a key (shown once)")
    p.set_defaults(func=_cmd_keys_create)
    p.add_argument("--org", default=None, help="organization id (default: the default org)")
    p.add_argument("--new-org", dest="new_org", default=None, help="create this organization")
    p.add_argument("--name", default="cli", help="a label to tell keys apart")
    p.add_argument("--records", dest="records_url", default=None)
    p = keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    p.set_defaults(func=_cmd_keys_list)
    p.add_argument("--org", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--records", dest="records_url", default=None)
    p = keys_sub.add_parser("revoke", help="revoke a key by its id")
    p.set_defaults(func=_cmd_keys_revoke)
    p.add_argument("key_id")
    p.add_argument("--records", dest="records_url", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    # whatever this process or its children write (chDB, SQLite journals, ours) is owner-only
    restrict_umask()
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
