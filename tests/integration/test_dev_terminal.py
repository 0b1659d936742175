"""A newcomer's dev loop, driven in a real terminal (tmux): ``tripwire dev`` in one window,
the user's commands in another, the flow files edited in between, and only what the
screens show is read."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import server_missing

pytestmark = pytest.mark.integration

FLOW = """\
from triggers import trigger
from words import GREETING


@trigger(event={"name": "data_updated", "parameters": {"days": "$.cfg.days"}})
def etl(days: int = 3) -> None:
    print(GREETING, "etl ran with days", days)
"""


class Terminal:
    """A tmux server of the test's own, with a window per program, read as a user reads it."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.socket = f"tripwire-test-{uuid.uuid4().hex[:8]}"
        self.folder = folder
        self.env = env
        self.commands = 0

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, f"tmux {' '.join(args)}: {done.stderr}"
        return done.stdout

    def start(self, window: str, command: str) -> None:
        self.tmux("new-session", "-d", "-s", "t", "-n", window, "-x", "250", "-y", "50", command)

    def open(self, window: str) -> None:
        # Not a login shell: /etc/profile would put back a PATH without the venv's tripwire
        self.tmux("new-window", "-t", "t", "-n", window, "bash --norc --noprofile -i")

    def type(self, window: str, *keys: str) -> None:
        self.tmux("send-keys", "-t", f"t:{window}", *keys)

    def run(self, window: str, command: str, timeout: float = 60) -> str:
        """Type ``command`` into the shell of ``window``; what it printed, once it ended."""
        self.commands += 1
        self.tmux("clear-history", "-t", f"t:{window}")
        # The end mark as printed differs from the command as typed (%s), which shows too
        self.type(window, f"clear; {command}; printf 'end%s\\n' {self.commands}", "Enter")
        self.wait_for(window, rf"(?m)^end{self.commands}$", timeout)
        return self.screen(window)

    def screen(self, window: str) -> str:
        # -J joins wrapped lines, -S - reads the scrollback too
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", f"t:{window}")

    def wait_for(self, window: str, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.screen(window))
            if found:
                return found
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {timeout:g}s waiting for {pattern!r} in the {window} "
                    f"window, which shows:\n{self.screen(window)}"
                )
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        server_missing("tmux is not installed (apt-get install tmux)")
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")} | {
        "TRIPWIRE_HOME": str(tmp_path / "home"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "SHELL": "/bin/bash",
        "PS1": "$ ",
        "TERM": "xterm-256color",
    }
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "etl.py").write_text(FLOW)
    (tmp_path / "flows" / "words.py").write_text("GREETING = 'hello'\n")
    made = Terminal(tmp_path, env)
    try:
        yield made
    finally:
        made.close()


def _ended_runs(terminal: Terminal, count: int) -> str:
    """Ask ``runs list`` until ``count`` runs of etl ended well; the newest one's name."""
    deadline = time.monotonic() + 60
    while True:
        shown = terminal.run("shell", "tripwire runs list --flow etl")
        ended = re.findall(r"(?m)^\s*(etl-\S+)\s+etl\s+(SUCCEEDED|FAILED)", shown)
        if len(ended) >= count:
            assert all(phase == "SUCCEEDED" for _, phase in ended), shown
            return str(ended[0][0])
        if time.monotonic() > deadline:
            pytest.fail(
                f"fewer than {count} ended runs of etl:\n{shown}\n"
                f"while dev shows:\n{terminal.screen('dev')}"
            )


def test_the_dev_loop_follows_edits_and_a_broken_file_leaves_the_others_running(
    terminal: Terminal, tmp_path: Path
) -> None:
    # Given `tripwire dev` on a folder of flows, in its own window
    terminal.start("dev", "tripwire dev flows; echo dev exited $?; sleep 600")
    terminal.wait_for("dev", r"tripwire dev ready")
    # The banner suggests an event that the loaded flow waits for, with its payload
    terminal.wait_for(
        "dev", r"tripwire publish data_updated --payload '\{\"cfg\": \{\"days\": 3\}\}'"
    )

    # When the user edits the flow: another field, and other code
    etl = tmp_path / "flows" / "etl.py"
    etl.write_text(FLOW.replace("$.cfg.days", "$.cfg.window").replace("ran with", "now runs with"))
    # Then dev says it redeployed, with the change of the trigger in one line
    terminal.wait_for(
        "dev",
        r"reloaded flows/etl\.py: ~ etl: dependencies\[data_updated\]\.parameters\.days "
        r"\"\$\.cfg\.days\" → \"\$\.cfg\.window\"",
    )

    # And an event published from another window runs the new code with the new mapping
    terminal.open("shell")
    terminal.run("shell", """tripwire publish data_updated --payload '{"cfg": {"window": 9}}'""")
    name = _ended_runs(terminal, 1)
    shown = terminal.run("shell", f"tripwire runs get {name}; tripwire runs logs {name}")
    assert re.search(r"(?m)^\s+days = 9$", shown) and "hello etl now runs with days 9" in shown

    # When a helper module the flow imports is edited, the next run uses it
    (tmp_path / "flows" / "words.py").write_text("GREETING = 'bonjour'\n")
    terminal.wait_for("dev", r"reloaded flows/words\.py: no trigger changed; the next runs use")
    terminal.run("shell", """tripwire publish data_updated --payload '{"cfg": {"window": 5}}'""")
    name = _ended_runs(terminal, 2)
    assert "bonjour etl now runs with days 5" in terminal.run("shell", f"tripwire runs logs {name}")

    # When a broken file is dropped into the folder
    (tmp_path / "flows" / "broken.py").write_text("import os\n\nKEY = os.environ['NO_SUCH_KEY']\n")
    # Then dev names it in one line, with the line and the code that raised
    terminal.wait_for(
        "dev",
        r"import error flows/broken\.py:3: KeyError: 'NO_SUCH_KEY' "
        r"\(KEY = os\.environ\['NO_SUCH_KEY'\]\)",
    )
    # And `sensors list` shows it too, until it is fixed
    listed = terminal.run("shell", "tripwire sensors list")
    assert "flows/broken.py:3: KeyError: 'NO_SUCH_KEY'" in listed, listed
    # And the good flow keeps running
    terminal.run("shell", """tripwire publish data_updated --payload '{"cfg": {"window": 4}}'""")
    _ended_runs(terminal, 3)
    assert "Traceback" not in terminal.screen("dev")

    # And Ctrl-C stops dev cleanly
    terminal.type("dev", "C-c")
    terminal.wait_for("dev", r"dev exited 0")
