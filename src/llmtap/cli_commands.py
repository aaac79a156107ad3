"""What each ``llmtap`` command runs, once ``llmtap.cli`` has parsed its options and settings.

Every import of the module doing the work is inside its function, so building the parser (and
``llmtap --help``) pays for none of them (tests/unit/test_cli.py guards it).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmtap.settings import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.serve import serve

    return serve(settings)


def cmd_proxy(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.consumer.call_price import pricer_factory
    from llmtap.proxy.server import run_proxy

    run_proxy(settings, pricer_factory(settings.price_overrides))
    return 0


def cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.consumer.service import run_consumer_until_signalled

    return run_consumer_until_signalled(settings)


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.server import run_api

    return run_api(settings)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.consumer.replay_cli import run_replay_command

    return run_replay_command(
        settings,
        from_offset=args.from_offset,
        partitions=args.partition,
        from_time=args.from_time,
        dlq=args.dlq,
        follow=args.follow,
        idle_s=args.idle_s,
    )


def cmd_requests(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.show import print_requests

    return print_requests(settings, limit=args.limit, as_json=args.json)


def cmd_request(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.show import print_request

    return print_request(settings, args.request_id, as_json=args.json)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.admin import migrate

    return migrate(settings)


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.admin import create_key
    from llmtap.proxy.gateway.ratelimit_policy import PolicyError, parse_policy

    rate_limit = None
    if args.rate_limit is not None:
        try:
            rate_limit = parse_policy(args.rate_limit.strip()).text()
        except PolicyError as exc:
            print(f"--rate-limit {args.rate_limit!r}: {exc}", file=sys.stderr)
            return 2
    return create_key(
        settings, org_id=args.org, new_org=args.new_org, name=args.name, rate_limit=rate_limit
    )


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.admin import list_keys

    return list_keys(settings, org_id=args.org, as_json=args.json)


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.admin import revoke_key

    return revoke_key(settings, args.key_id)


def cmd_webhooks_add(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.webhook_admin import add_webhook

    return add_webhook(
        settings,
        org_id=args.org,
        url=args.url,
        sample_rate=args.sample_rate,
        filters=args.filter or [],
    )


def cmd_webhooks_list(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.webhook_admin import list_webhooks

    return list_webhooks(settings, org_id=args.org, as_json=args.json)


def cmd_webhooks_rm(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.webhook_admin import remove_webhook

    return remove_webhook(settings, org_id=args.org, webhook_id=args.webhook_id)


def cmd_alerts_add(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.alert_admin import add_alert

    return add_alert(
        settings,
        org_id=args.org,
        url=args.url,
        metric=args.metric,
        threshold=args.threshold,
        comparison=args.comparison,
        window_s=args.window,
        min_requests=args.min_requests,
        name=args.name,
        filter_json=args.filter,
        group_by=args.group_by,
    )


def cmd_alerts_list(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.alert_admin import list_alerts

    return list_alerts(settings, org_id=args.org, as_json=args.json)


def cmd_alerts_rm(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.api.alert_admin import remove_alert

    return remove_alert(settings, org_id=args.org, rule_id=args.alert_id)


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    from llmtap.demo.seed import SeedPlan, run_seed

    plan = SeedPlan(
        rows=args.rows,
        days=args.days,
        org=args.org,
        seed=args.seed,
        bodies=args.with_bodies,
        batch=args.batch,
    )
    return run_seed(settings, plan)


def mock_upstream(args: argparse.Namespace) -> int:
    from llmtap.testing.mock_upstream import run_mock_upstream

    run_mock_upstream(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        chunk_delay_ms=args.chunk_delay_ms,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
    )
    return 0
