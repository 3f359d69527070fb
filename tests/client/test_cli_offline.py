"""The client's commands before any server answers: configuration and usage errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli

runner = CliRunner()


def test_no_key_is_a_configuration_error() -> None:
    result = runner.invoke(cli, ["projects", "ls"])
    assert result.exit_code == 2
    assert "stratus login" in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    env = {"STRATUS_API_KEY": "k", "STRATUS_URL": "http://127.0.0.1:9"}
    bad_hp = runner.invoke(
        cli, ["runs", "submit", str(tmp_path), "-p", "x", "-e", "t.py", "--hp", "nokey"], env=env
    )
    assert bad_hp.exit_code == 2
    assert "KEY=VALUE" in bad_hp.stderr
    missing_dir = runner.invoke(
        cli, ["runs", "submit", str(tmp_path / "nope"), "-p", "x", "-e", "t.py"], env=env
    )
    assert missing_dir.exit_code == 2
    assert runner.invoke(cli, ["invoke", "d", "--data", "@/nonexistent"], env=env).exit_code == 2
    assert runner.invoke(cli, ["runs", "ls"], env=env).exit_code == 2  # --project is required


def test_server_commands_are_still_there() -> None:
    for command in ("dev", "api", "worker", "beat", "db", "admin", "demo"):
        assert runner.invoke(cli, [command, "--help"]).exit_code == 0, command
