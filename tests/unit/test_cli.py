"""Every command has --help; configuration errors are clear, not tracebacks."""

import subprocess
import sys

import pytest

from streams.cli import build_parser, main


def _commands(parser, prefix=()):
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _commands(sub, (*prefix, name))


COMMANDS = sorted(set(_commands(build_parser())))


def test_expected_commands_exist():
    assert {("worker",), ("topics",), ("config",), ("dev", "broker"), ("demo",),
            ("simulate",), ("replay",)} <= set(COMMANDS)  # fmt: skip


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "top")
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: churnwatch" in capsys.readouterr().out


def test_python_dash_m_streams_works():
    out = subprocess.run([sys.executable, "-m", "streams", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "worker" in out.stdout


def test_bad_setting_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("CHURNWATCH_PARTITIONS", "-3")
    assert main(["config"]) == 2
    assert "CHURNWATCH_PARTITIONS must be >= 1" in capsys.readouterr().err
