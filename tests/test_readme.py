"""Every example in the README runs as written, and so does every script in `examples/`.

Python blocks run in a fresh interpreter. Shell commands run against a real gateway started
from the shipped `config.toml` (on a free port instead of 8080, its journal in a temporary
directory), from a directory that holds the repository's `tests/`, `examples/` and
`config.toml`, so outputs land there and not in the repository. A command that is not run
here must be listed in NOT_RUN with the reason: a new README command is never skipped
silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import spawn_server
from tests.test_serve import free_port, wait_ready

REPO = Path(__file__).parent.parent
README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent

NOT_RUN = {
    "make run": "starts the gateway in the foreground; the gateway fixture below is that",
    "make test": "this test suite itself",
    "make bench": "a benchmark: minutes of machine time, measured by hand",
    ".venv/bin/python benchmarks/": "benchmarks: minutes of machine time, measured by hand",
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def shell_commands() -> list[str]:
    commands = []
    for block in blocks("sh"):
        text = re.sub(r"\\\n\s*", " ", block)  # join continued lines
        for line in text.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def not_run(command: str) -> bool:
    return any(command.startswith(prefix) for prefix in NOT_RUN)


@pytest.fixture
async def workspace(tmp_path: Path) -> AsyncIterator[tuple[Path, int]]:
    """A working directory like a checkout's, and a gateway on config.toml at a free port."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("tests", "examples"):
        (work / name).symlink_to(REPO / name)
    shutil.copy(REPO / "config.toml", work / "config.toml")
    port = free_port()
    process = await spawn_server(work / "config.toml", "--port", str(port), env={
        "LOBGW_JOURNAL__DIRECTORY": str(tmp_path / "journal")})
    await wait_ready(port)
    yield work, port
    process.terminate()
    await process.wait()


def run(command: list[str] | str, work: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(command, shell=isinstance(command, str), cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run(index: int, tmp_path: Path) -> None:
    (tmp_path / "tests").symlink_to(REPO / "tests")
    done = run([sys.executable, "-c", blocks("python")[index]], tmp_path)
    assert done.returncode == 0, done.stderr


async def test_shell_commands_run(workspace: tuple[Path, int]) -> None:
    work, port = workspace
    commands = shell_commands()
    assert any(c.startswith("curl") for c in commands)
    assert any(c.startswith("lobgw replay") for c in commands)
    ran = 0
    for command in commands:
        if not_run(command):
            continue
        assert command.split()[0] in ("curl", "lobgw"), f"add {command!r} to NOT_RUN, or run it"
        done = run(command.replace("8080", str(port)), work)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, command
        if command.startswith("curl -s -X POST"):
            assert '"order"' in done.stdout, done.stdout
        ran += 1
    assert ran >= 8
    assert (work / "out" / "book.csv").stat().st_size > 0
    assert (work / "out" / "vwap.json").stat().st_size > 0
    assert (work / "out" / "vwap.png").stat().st_size > 0
    assert not (REPO / "book.csv").exists() and not (REPO / "vwap.json").exists()


async def test_example_scripts_run(workspace: tuple[Path, int]) -> None:
    work, port = workspace
    url = f"ws://127.0.0.1:{port}/ws"
    client = run([sys.executable, "examples/client.py", url], work)
    assert client.returncode == 0, client.stderr
    assert "bought 0.2000 @ 64000.25 as TAKER" in client.stdout, client.stdout
    assert "0 errors" in client.stdout
    replay = run(["sh", "examples/replay_into_gateway.sh", url], work)
    assert replay.returncode == 0, replay.stderr
    assert '"symbol": "BTC-USD"' in replay.stdout
    strategy = run([sys.executable, "examples/strategy.py"], work)
    assert strategy.returncode == 0, strategy.stderr
    assert "join-the-bid" in strategy.stdout and "fill ratio" in strategy.stdout
