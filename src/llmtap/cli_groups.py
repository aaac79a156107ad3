"""The arguments of llmtap's commands that have their own (keys, webhooks, alerts, seed).

``cli.py`` builds the parser; the commands' sub-commands are declared here so it stays short.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmtap.cli_commands import (
    cmd_alerts_add,
    cmd_alerts_list,
    cmd_alerts_rm,
    cmd_keys_create,
    cmd_keys_list,
    cmd_keys_revoke,
    cmd_webhooks_add,
    cmd_webhooks_list,
    cmd_webhooks_rm,
)

if TYPE_CHECKING:
    from llmtap.settings import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]
Leaf = Callable[[str, str, Handler], argparse.ArgumentParser]
"""Adds one sub-command (name, help, what runs it) to a group and returns its parser."""


class HelpFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36)

    def _format_action(self, action: argparse.Action) -> str:
        # the commands, one line each, without the "<command>" line argparse puts above them
        if isinstance(action, argparse._SubParsersAction):
            return "".join(self._format_action(a) for a in action._get_subactions())
        return super()._format_action(action)


def leaves(
    parser: argparse.ArgumentParser,
    group: str,
    add_globals: Callable[[argparse.ArgumentParser], None],
    *,
    with_org: bool,
) -> Leaf:
    """The ``Leaf`` of ``llmtap <group>``: each sub-command takes the global options too, and
    ``--org`` when ``with_org``."""
    sub = parser.add_subparsers(
        dest=f"{group}_command", required=True, title="commands", metavar="<command>"
    )

    def leaf(name: str, help_: str, run: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            prog=f"llmtap {group} {name}",
            help=help_,
            description=help_,
            usage=f"llmtap {group} {name} [options]",
            formatter_class=HelpFormatter,
        )
        p.set_defaults(run=run)
        add_globals(p)
        if with_org:
            p.add_argument("--org", default=None, help="organization id (default: the default org)")
        return p

    return leaf


def positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return number


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows", type=int, required=True, metavar="N", help="how many calls to write"
    )
    parser.add_argument(
        "--days",
        type=positive,
        default=7.0,
        metavar="DAYS",
        help="spread them over the last DAYS, up to now (default: 7)",
    )
    parser.add_argument(
        "--org",
        default="default",
        help="organization id, or 'default' for the default organization (default: default)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        metavar="N",
        help="random seed: the same seed writes the same calls (default: 42)",
    )
    # (--bodies is the body store's URL, a global option: bodies are on unless --no-bodies)
    parser.add_argument(
        "--no-bodies",
        dest="with_bodies",
        action="store_false",
        help="do not store request and response bodies (default: stored, in packs)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=10_000,
        metavar="N",
        help="rows per write to the stores (default: 10000)",
    )


def add_keys(leaf: Leaf) -> None:
    p = leaf("create", "Create a key (shown once).", cmd_keys_create)
    p.add_argument("--org", default=None, help="organization id (default: the default org)")
    p.add_argument("--new-org", default=None, metavar="NAME", help="create this organization")
    p.add_argument("--name", default="cli", help="a label to tell keys apart (default: cli)")
    p.add_argument(
        "--rate-limit",
        default=None,
        metavar="POLICY",
        help='limit every call made with the key, e.g. "1000;w=60" or "500;w=86400;u=cents;s=user"'
        " (<quota>;w=<seconds>[;u=request|cents][;s=user|<property>], docs/gateway.md)",
    )
    p = leaf("list", "List keys (their ids and labels, never the keys).", cmd_keys_list)
    p.add_argument("--org", default=None, help="organization id (default: the default org)")
    p.add_argument("--json", action="store_true", help="as JSON")
    p = leaf("revoke", "Revoke a key by its id.", cmd_keys_revoke)
    p.add_argument("key_id", help="the id `llmtap keys list` shows")


def add_webhooks(leaf: Leaf) -> None:
    p = leaf("add", "Add a webhook (its signing secret is shown once).", cmd_webhooks_add)
    p.add_argument("url", help="where deliveries are POSTed: http(s)://host[:port][/path]")
    p.add_argument(
        "--sample-rate",
        type=float,
        default=100.0,
        metavar="PERCENT",
        help="percentage of matching calls delivered (default: 100)",
    )
    p.add_argument(
        "--filter",
        action="append",
        metavar="NAME=VALUE",
        help="a custom property every delivered call must have (repeatable; all must match)",
    )
    p = leaf("list", "List webhooks with their state (never their secrets).", cmd_webhooks_list)
    p.add_argument("--json", action="store_true", help="as JSON")
    p = leaf("rm", "Delete a webhook and its deliveries.", cmd_webhooks_rm)
    p.add_argument("webhook_id", help="the id `llmtap webhooks list` shows")


def add_alerts(leaf: Leaf) -> None:
    p = leaf("add", "Add an alert rule (its signing secret is shown once).", cmd_alerts_add)
    p.add_argument("url", help="where firings and resolutions are POSTed (Slack's shape for Slack)")
    p.add_argument(
        "--metric",
        required=True,
        help="error_rate, cost_usd, request_count, latency_p95_ms or unpriced_share",
    )
    p.add_argument("--threshold", type=float, required=True, help="the value compared with")
    p.add_argument("--comparison", default="gt", help="gt, gte, lt or lte (default: gt)")
    p.add_argument("--window", type=int, default=300, metavar="SECONDS", help="(default: 300)")
    p.add_argument(
        "--min-requests",
        type=int,
        default=1,
        metavar="N",
        help="fewer calls in the window never fire (default: 1)",
    )
    p.add_argument("--name", default=None, help="shown in the messages")
    p.add_argument("--filter", default=None, metavar="JSON", help="the /v1/requests filter tree")
    p.add_argument(
        "--group-by", default=None, help="model, user, … or property:<name>: one episode each"
    )
    p = leaf("list", "List alert rules with their state (never their secrets).", cmd_alerts_list)
    p.add_argument("--json", action="store_true", help="as JSON")
    p = leaf("rm", "Delete an alert rule and its history.", cmd_alerts_rm)
    p.add_argument("alert_id", help="the id `llmtap alerts list` shows")
