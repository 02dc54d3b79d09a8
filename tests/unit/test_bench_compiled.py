"""benchmarks/bench_compiled.py: its wheel handling and its table (not a timing)."""

from __future__ import annotations

import doctest
import zipfile
from pathlib import Path

import pytest

from tests.unit.bench_loader import load_benchmark

bench = load_benchmark("bench_compiled")


def test_the_table_doctest():
    assert doctest.testmod(bench).failed == 0


def wheel(tmp_path: Path, files: list[str]) -> Path:
    path = tmp_path / "churnwatch-0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name in files:
            z.writestr(name, "")
    return path


def test_the_python_variant_is_the_wheel_without_its_compiled_modules(tmp_path: Path):
    built = wheel(tmp_path, ["models/engine.py", "models/engine.cpython-311.so", "ab__mypyc.so"])
    dirs = bench.unpack(built, tmp_path / "site")
    assert sorted(p.name for p in dirs["compiled"].rglob("*") if p.is_file()) == [
        "ab__mypyc.so", "engine.cpython-311.so", "engine.py"]  # fmt: skip
    assert [p.name for p in dirs["python"].rglob("*") if p.is_file()] == ["engine.py"]


def test_a_wheel_built_without_mypyc_is_refused(tmp_path: Path):
    with pytest.raises(SystemExit, match="no compiled module"):
        bench.unpack(wheel(tmp_path, ["models/engine.py"]), tmp_path / "site")
