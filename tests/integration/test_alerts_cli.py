"""``llmtap alerts add|list|rm`` as an operator runs them, on a fresh data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.processes import llmtap_env


def llmtap(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmtap", "--data-dir", str(data), "alerts", *args],
        env=llmtap_env({}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_add_list_and_remove_an_alert(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = llmtap(
        data,
        "add",
        "https://hooks.slack.com/services/T0/B0/x",
        "--metric",
        "latency_p95_ms",
        "--threshold",
        "2000",
        "--window",
        "600",
        "--min-requests",
        "20",
        "--group-by",
        "property:Team",
        "--filter",
        '{"field": "model", "op": "eq", "value": "gpt-4o"}',
        "--name",
        "slow answers",
    )
    assert added.returncode == 0, added.stderr
    fields = dict(line.split(":", 1) for line in added.stdout.splitlines() if ":" in line)
    rule_id, secret = fields["alert"].strip(), fields["signing secret"].strip()
    assert rule_id.startswith("al_") and secret.startswith("whsec_")
    assert "shown once" in added.stderr

    listed = llmtap(data, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (rule,) = json.loads(listed.stdout)
    assert rule["id"] == rule_id and rule["metric"] == "latency_p95_ms"
    assert rule["threshold"] == 2000 and rule["window_s"] == 600 and rule["min_requests"] == 20
    assert rule["group_by"] == "property:team" and rule["slack"] is True
    assert rule["filter"] == {"field": "model", "op": "eq", "value": "gpt-4o"}
    assert rule["state"] == "ok" and secret not in listed.stdout
    assert rule_id in llmtap(data, "list").stdout

    assert llmtap(data, "rm", rule_id).returncode == 0
    assert llmtap(data, "rm", rule_id).returncode == 1
    assert llmtap(data, "list").stdout.strip() == "no alerts"


def test_bad_rules_are_refused_before_anything_is_stored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for args, said in [
        (["http://169.254.169.254/", "--metric", "error_rate", "--threshold", "0.1"], "url:"),
        (["https://example.com/a", "--metric", "nope", "--threshold", "0.1"], "metric:"),
        (["https://example.com/a", "--metric", "error_rate", "--threshold", "nan"], "threshold"),
        (
            [
                "https://example.com/a",
                "--metric",
                "error_rate",
                "--threshold",
                "1",
                "--window",
                "5",
            ],
            "window_s",
        ),
        (
            ["https://example.com/a", "--metric", "cost_usd", "--threshold", "1", "--filter", "{"],
            "--filter",
        ),
    ]:
        refused = llmtap(data, "add", *args)
        assert refused.returncode == 2 and said in refused.stderr, (args, refused.stderr)
    assert llmtap(data, "list").stdout.strip() == "no alerts"
