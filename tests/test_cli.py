"""The command line as a new user meets it: a wheel that installs and starts, `lobgw init`,
`--version`, and one clear line instead of a traceback when something is in the way."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import aiohttp
import pytest

import lobgw
from lobgw.config import load_config
from tests.conftest import spawn_server
from tests.test_serve import free_port, wait_ready

REPO = Path(__file__).parent.parent


def lobgw_command(*args: str, cwd: Path | None = None, timeout: float = 60
                  ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lobgw", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def test_version() -> None:
    done = lobgw_command("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"lobgw {lobgw.__version__}")


def test_init_writes_a_starter_config_with_fresh_keys(tmp_path: Path) -> None:
    first = lobgw_command("init", str(tmp_path / "one"))
    second = lobgw_command("init", str(tmp_path / "two"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert "lobgw serve --config" in first.stdout
    one = load_config(tmp_path / "one" / "config.toml")
    two = load_config(tmp_path / "two" / "config.toml")
    keys_one = {account.api_key for account in one.accounts}
    keys_two = {account.api_key for account in two.accounts}
    demo_keys = {account["api_key"] for account in
                 tomllib.loads((REPO / "config.toml").read_text())["accounts"]}
    assert len(keys_one) == 2 and not keys_one & keys_two and not keys_one & demo_keys
    assert (tmp_path / "one" / "config.toml").stat().st_mode & 0o077 == 0  # secrets inside
    # never overwrite what a user already has
    again = lobgw_command("init", str(tmp_path / "one"))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert {a.api_key for a in load_config(tmp_path / "one" / "config.toml").accounts} == \
        keys_one


def test_serve_without_a_config_says_what_to_do(tmp_path: Path) -> None:
    done = lobgw_command("serve", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "lobgw init" in done.stderr
    assert "Traceback" not in done.stderr


async def test_serve_on_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert lobgw_command("init", str(tmp_path)).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await spawn_server(config, "--port", str(port))
        assert process.stderr is not None
        async with asyncio.timeout(30):
            code = await process.wait()
            stderr = (await process.stderr.read()).decode()
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], stderr
    assert not (tmp_path / "data").exists()  # it stopped before touching the journal


def test_demo_into_a_closed_pipe_exits_quietly() -> None:
    with subprocess.Popen([sys.executable, "-m", "lobgw", "demo", "--commands", "20000"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as demo:
        assert demo.stdout is not None and demo.stderr is not None
        first = demo.stdout.readline()  # like `| head -1`: read one line, close the pipe
        demo.stdout.close()
        stderr = demo.stderr.read().decode()
        demo.wait(timeout=60)
    assert b"commands ->" in first
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


async def test_a_wheel_installs_in_a_new_venv_and_serves(tmp_path: Path) -> None:
    """`pip wheel .`, the wheel in a fresh virtualenv, `lobgw init`, `lobgw serve`, /health.

    The new venv gets this venv's dependencies through a path entry (so nothing downloads)
    but none of its lobgw: the package must come from the wheel alone."""
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(wheels), str(REPO)], capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("lobgw-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], capture_output=True, text=True, check=True)
    Path(site.stdout.strip(), "dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python),
                                "install", "--no-deps", "-q", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    where = subprocess.run([str(python), "-c", "import lobgw, pathlib; p = pathlib.Path("
                            "lobgw.__file__).parent; print(p); print((p / 'py.typed')"
                            ".exists())"], capture_output=True, text=True, cwd=home, env=env,
                           check=True)
    location, typed = where.stdout.split()
    assert Path(location).is_relative_to(venv) and typed == "True"
    lobgw_script = venv / "bin" / "lobgw"
    init = subprocess.run([str(lobgw_script), "init"], capture_output=True, text=True,
                          cwd=home, env=env, timeout=60)
    assert init.returncode == 0, init.stderr
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        str(lobgw_script), "serve", "--port", str(port), cwd=home, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_ready(port)
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/health") as response:
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
    finally:
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 30) == 0
    assert (home / "data").is_dir()  # the starter config journals next to itself


@pytest.mark.parametrize("name", ["LICENSE", "CHANGELOG.md"])
def test_the_project_ships_its_papers(name: str) -> None:
    assert (REPO / name).stat().st_size > 200
