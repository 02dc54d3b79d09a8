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
    out = subprocess.run(
        [sys.executable, "-m", "streams", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "worker" in out.stdout


def test_bad_setting_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("CHURNWATCH_PARTITIONS", "-3")
    assert main(["config"]) == 2
    assert "CHURNWATCH_PARTITIONS must be >= 1" in capsys.readouterr().err


def test_help_imports_no_heavy_library():
    """``--help`` builds every parser without importing river, faust or Kafka clients
    (river alone took 1.6 s), so it answers at once."""
    code = (
        "import sys; from streams.cli import build_parser; build_parser().format_help(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'river', 'scipy', 'faust', 'kafka', 'aiokafka', 'numpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_mistyped_variable_is_reported_with_the_closest_name(monkeypatch, capsys):
    monkeypatch.setenv("CHURNWATCH_PARTITION", "4")
    assert main(["config"]) == 0
    err = capsys.readouterr().err
    assert "warning: CHURNWATCH_PARTITION is not a churnwatch setting" in err
    assert "did you mean CHURNWATCH_PARTITIONS?" in err


def _churnwatch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)  # fmt: skip


def test_replay_checks_its_files_before_connecting(tmp_path):
    unreachable = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    out = _churnwatch("replay", str(tmp_path / "missing.jsonl"), str(tmp_path), env=unreachable)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"replay: cannot read {tmp_path / 'missing.jsonl'}: no such file",
        f"replay: cannot read {tmp_path}: not a file",
    ]


@pytest.mark.parametrize("command", [("replay", "--wait", "1", "FILE"),
                                     ("simulate", "--kafka", "--wait", "1", "--accounts", "2")])  # fmt: skip
def test_unreachable_broker_is_one_line_naming_it(command, tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"event_id": "e", "type": "login", "account_id": "a", "ts": 1767225600000}\n'
    )
    args = [str(events) if a == "FILE" else a for a in command]
    out = _churnwatch(*args, "--quiet", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("churnwatch:")]
    assert (
        len(lines) == 1 and "cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1" in lines[0]
    )


def test_accounts_erase_and_erase_are_one_command():
    parser = build_parser()
    a = parser.parse_args(["accounts", "erase", "a-1", "a-2", "--ts", "1767225600000"])
    b = parser.parse_args(["erase", "a-1", "a-2", "--ts", "1767225600000"])
    assert a.func is b.func and (a.account_ids, a.ts) == (b.account_ids, b.ts)


def test_accounts_show_asks_the_worker_with_the_token(monkeypatch, capsys):
    import http.server
    import threading

    seen = []

    class Worker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            seen.append((self.path, self.headers.get("Authorization")))
            known = self.path == "/accounts/a%2F1"
            self.send_response(200 if known else 404)
            self.end_headers()
            self.wfile.write(b'{\n "account_id": "a/1"}' if known else b'{"error": "unknown"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Worker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("CHURNWATCH_API_TOKEN", "t" * 20)
        monkeypatch.setenv("CHURNWATCH_WEB_PORT", str(server.server_address[1]))
        assert main(["accounts", "show", "a/1"]) == 0
        assert capsys.readouterr().out == '{"account_id":"a/1"}\n'
        assert seen == [("/accounts/a%2F1", "Bearer " + "t" * 20)]
        assert main(["accounts", "show", "a/1", "gone"]) == 1  # an unknown account
        out = capsys.readouterr()
        assert out.out.count("\n") == 1 and "gone: unknown account" in out.err
    finally:
        server.shutdown()


def test_a_freed_large_block_goes_back_to_the_system_under_glibc():
    """The worker fixes glibc's mmap threshold (``return_large_buffers``): a large block
    freed is unmapped, so resident memory comes back after large messages."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only: other C libraries have no such threshold")
    code = (
        "import ctypes, resource\n"
        "from streams.cli import return_large_buffers\n"
        "assert return_large_buffers()\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()\n"
        "before = rss()\n"
        "for _ in range(50):\n"
        "    blocks = [bytearray(512 * 1024) for _ in range(40)]\n"  # 20 MiB, touched
        "    del blocks\n"
        "print(rss() - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(done.stdout) < 8 * 2**20, done.stdout


def test_the_worker_freezes_its_start_and_still_collects_new_cycles():
    """``tune_gc``: what existed before is out of the collector's reach (frozen), the
    young threshold is the setting's, and a reference cycle made afterwards is still
    collected by the collector's own young collections."""
    code = (
        "import gc, weakref\n"
        "from streams.cli import tune_gc\n"
        "class Node: pass\n"
        "tune_gc(1000)\n"
        "frozen = gc.get_freeze_count()\n"
        "node = Node(); node.me = node; gone = weakref.ref(node); del node\n"
        "junk = [[] for _ in range(5000)]\n"  # past the threshold: young collections run
        "print(gc.get_threshold()[0], frozen > 1000, gone() is None)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1000", "True", "True"], done.stdout
