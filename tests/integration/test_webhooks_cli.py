"""``llmtap webhooks add|list|rm`` as an operator runs them, on a fresh data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.processes import llmtap_env


def llmtap(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmtap", "--data-dir", str(data), "webhooks", *args],
        env=llmtap_env({}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_add_list_and_remove_a_webhook(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = llmtap(
        data, "add", "https://example.com/hook", "--sample-rate", "25", "--filter", "Env=prod"
    )
    assert added.returncode == 0, added.stderr
    fields = dict(line.split(":", 1) for line in added.stdout.splitlines() if ":" in line)
    webhook_id, secret = fields["webhook"].strip(), fields["signing secret"].strip()
    assert webhook_id.startswith("wh_") and secret.startswith("whsec_")
    assert "shown once" in added.stderr

    listed = llmtap(data, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (hook,) = json.loads(listed.stdout)
    assert hook["id"] == webhook_id and hook["sample_rate"] == 25
    assert hook["property_filters"] == {"env": "prod"}
    assert secret not in listed.stdout
    assert webhook_id in llmtap(data, "list").stdout

    assert llmtap(data, "rm", webhook_id).returncode == 0
    assert llmtap(data, "rm", webhook_id).returncode == 1
    assert llmtap(data, "list").stdout.strip() == "no webhooks"


def test_a_private_url_is_refused(tmp_path: Path) -> None:
    refused = llmtap(tmp_path / "data", "add", "http://169.254.169.254/latest/meta-data/")
    assert refused.returncode == 2 and "url:" in refused.stderr


def test_filters_are_held_to_the_apis_rules(tmp_path: Path) -> None:
    """The same rules as ``POST /v1/webhooks`` and the dashboard's form (one copy of them)."""
    data = tmp_path / "data"
    url = "https://example.com/hook"
    too_many = [arg for i in range(21) for arg in ("--filter", f"k{i}=v")]
    for args, said in [
        (("--filter", "Env=a", "--filter", "env=b"), "given twice"),
        (tuple(too_many), "at most 20 property filters"),
        (("--filter", "k=" + "v" * 300), "at most 256"),
        (("--filter", "novalue"), "expected NAME=VALUE"),
    ]:
        refused = llmtap(data, "add", url, *args)
        assert refused.returncode == 2 and said in refused.stderr, (args[:2], refused.stderr)
    assert llmtap(data, "list").stdout.strip() == "no webhooks"
