"""The command line: every option documented with its variable and default, global options on
either side of the command, options only where they mean something, and a fast start."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmtap import cli
from llmtap.cli_options import SettingOption, setting_options
from llmtap.settings import Settings


def parse(argv: list[str]) -> argparse.Namespace:
    return cli.build_parser().parse_args(argv)


def settings_of(argv: list[str]) -> Settings:
    return cli.load_from_args(parse(argv))


def help_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def options_of(command: cli.Command) -> list[SettingOption]:
    sections = (*cli.GLOBAL_SECTIONS, *command.sections) if command.reads_settings else ()
    return [o for o in setting_options() if o.section in sections]


@pytest.fixture(autouse=True)
def no_llmtap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LLMTAP_"):
            monkeypatch.delenv(name)


def test_the_top_help_lists_every_command_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_text([], capsys)
    assert "imported lazily" not in text
    for command in cli.COMMANDS:
        line = next(line for line in text.splitlines() if line.split()[:1] == [command.name])
        assert command.help.split()[0] in line
    for option in setting_options():
        if option.section in cli.GLOBAL_SECTIONS:
            assert option.env in text, option.name
    assert "$LLMTAP_CONFIG" in text


@pytest.mark.parametrize("command", cli.COMMANDS, ids=lambda c: c.name)
def test_each_command_help_names_every_option_with_its_variable(
    command: cli.Command, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_text([command.name], capsys)
    for option in options_of(command):
        assert option.flag in text and option.env in text, option.name
    # every option a person can type has a line of help
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices[command.name]._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue  # its commands have help lines: tested above and below
        assert action.help and action.help != argparse.SUPPRESS, action.option_strings


@pytest.mark.parametrize("leaf", ["create", "list", "revoke"])
def test_keys_commands_have_help_too(leaf: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(["keys", leaf], capsys)
    assert "$LLMTAP_RECORDS_URL" in text


def test_global_options_work_before_or_after_the_command(tmp_path: Path) -> None:
    before = settings_of(["--data-dir", str(tmp_path), "--queue", "sqlite:///q.db", "serve"])
    after = settings_of(["serve", "--data-dir", str(tmp_path), "--queue-url", "sqlite:///q.db"])
    assert before == after
    assert before.data_dir == tmp_path and before.queue_url == "sqlite:///q.db"
    # both sides: the one after the command wins
    both = settings_of(["--log-level", "debug", "requests", "--log-level", "warning"])
    assert both.log_level == "WARNING"
    keys = settings_of(["--records", "sqlite:///r.db", "keys", "list"])
    assert keys.records_url == "sqlite:///r.db"
    assert settings_of(["keys", "list", "--records", "sqlite:///r.db"]) == keys


def test_command_options_map_onto_their_settings() -> None:
    serve = settings_of(["serve", "--port", "9000", "--processes", "2", "--api-port", "9001"])
    assert (serve.proxy_port, serve.proxy_processes, serve.api_port) == (9000, 2, 9001)
    assert settings_of(["proxy", "--proxy-port", "9002"]).proxy_port == 9002
    api = settings_of(["api", "--host", "127.0.0.2", "--port", "9003"])
    assert (api.api_host, api.api_port, api.proxy_port) == ("127.0.0.2", 9003, 8787)
    assert settings_of(["proxy", "--no-auth-gate"]).auth_gate is False
    prices = settings_of(["consume", "--price-overrides", '{"m": {"input": 1.5}}'])
    assert prices.price_overrides == {"m": {"input": 1.5}}
    routes = settings_of(["serve", "--routes", '{"local": "http://127.0.0.1:1"}'])
    assert routes.routes == {"local": "http://127.0.0.1:1"}


@pytest.mark.parametrize(
    "argv",
    [
        ["consume", "--port", "1"],
        ["consume", "--host", "0.0.0.0"],
        ["consume", "--processes", "2"],
        ["consume", "--api-port", "1"],
        ["requests", "--proxy-port", "1"],
        ["proxy", "--batch-max-records", "5"],
        ["api", "--processes", "2"],
        ["mock-upstream", "--data-dir", "x"],
        ["serve", "--price-overrides", "{not json"],
        ["serve", "--log-level", "loud"],
        ["serve", "--port", "eighty"],
    ],
)
def test_options_are_refused_where_they_mean_nothing(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_settings_options_before_a_command_that_reads_none_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--data-dir", "x", "mock-upstream"])
    assert exited.value.code == 2
    assert "mock-upstream takes no settings options" in capsys.readouterr().err


def test_options_win_over_environment_which_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "llmtap.toml"
    config.write_text("proxy_port = 7001\napi_port = 7002\nbatch_max_records = 7\n")
    monkeypatch.setenv("LLMTAP_CONFIG", str(config))
    monkeypatch.setenv("LLMTAP_API_PORT", "7012")
    settings = settings_of(["serve", "--port", "7021"])
    assert (settings.proxy_port, settings.api_port, settings.batch_max_records) == (7021, 7012, 7)
    # --config names another file than the variable
    other = tmp_path / "other.toml"
    other.write_text("batch_max_records = 9\n")
    assert settings_of(["--config", str(other), "consume"]).batch_max_records == 9


def test_an_invalid_setting_is_a_usage_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMTAP_API_FILTER_MAX_DEPTH", "0")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--data-dir", str(tmp_path), "requests"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err and "api_filter_max_depth" in err
    with pytest.raises(SystemExit):
        cli.main(["--config", str(tmp_path / "missing.toml"), "requests"])
    assert "cannot read the settings file" in capsys.readouterr().err


def test_the_options_read_from_source_agree_with_the_settings_model() -> None:
    options = setting_options()
    assert [o.name for o in options] == list(Settings.model_fields)
    kinds = {str: "str", int: "int", float: "float", bool: "bool", Path: "path"}
    for option in options:
        info = Settings.model_fields[option.name]
        assert info.description, f"{option.name} has no docstring"
        assert " ".join(option.doc.split()) == " ".join(info.description.split()), option.name
        default = info.get_default(call_default_factory=True)
        assert option.default == (str(default) if isinstance(default, Path) else default)
        expected = kinds.get(info.annotation, "json")  # type: ignore[arg-type]
        if option.choices:
            expected = "choice"
        assert option.kind == expected, option.name
    # every section is taken by some command, so every field is an option somewhere
    taken = set(cli.GLOBAL_SECTIONS) | {s for c in cli.COMMANDS for s in c.sections}
    assert {o.section for o in options} <= taken


def test_the_cli_imports_neither_pydantic_nor_the_stores() -> None:
    probe = (
        "import sys, llmtap.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('pydantic', 'sqlalchemy', 'chdb', 'confluent_kafka', "
        "'fastapi', 'uvloop') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.replace("'", '"')) == []


def test_help_start_up_time_is_measured() -> None:
    """Printed, not asserted: a shared machine's timing is no verdict (run with ``-s``)."""
    runs = []
    for _ in range(10):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "llmtap", "--help"], check=True, stdout=subprocess.DEVNULL
        )
        runs.append((time.perf_counter() - started) * 1000)
    print(f"\nllmtap --help: min {min(runs):.0f} ms, median {statistics.median(runs):.0f} ms")
