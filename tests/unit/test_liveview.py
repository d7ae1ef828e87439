"""The live view, as a person at a terminal sees it: a simulated rollout rendered by the CLI
under a pseudo-terminal, its bake counted down and the judge's progress said in words."""

import errno
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def run_under_pty(argv: list[str]) -> tuple[int, str]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
                               env={**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(REPO)})
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # the child closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
        code = process.wait()
    return code, b"".join(chunks).decode(errors="replace")


def seconds(text: str) -> float:
    minutes, _, rest = text.rpartition("m")
    return float(minutes or 0) * 60 + float(rest.rstrip("s"))


def test_the_live_view_counts_a_bake_down_on_a_terminal(tmp_path):
    code, output = run_under_pty([sys.executable, "tests/unit/simapply.py", str(tmp_path / "journal.sqlite"),
                                  "--bake", "3", "--interval", "0.5", "--stages", "1", "2"])
    assert code == 0, output
    shown = ANSI.sub("\n", output)
    left = [seconds(match) for match in re.findall(r"stage 1/2 bake: \S+ of 3s, (\S+) left", shown)]
    assert len(set(left)) >= 2, shown  # the clock moved while the bake ran
    assert left == sorted(left, reverse=True), left  # and only ever down
    assert "collecting 1 of 2 intervals" in shown and "passing so far" in shown
    assert "stage 1/2: host-00" in shown and "verdict: pass" in shown
    total = next(line for line in shown.splitlines() if line.startswith("total "))
    assert "changed=3" in total and "failed=0" in total


def test_without_a_terminal_the_view_is_plain_lines(tmp_path):
    finished = subprocess.run([sys.executable, "tests/unit/simapply.py", str(tmp_path / "journal.sqlite"),
                               "--bake", "1", "--interval", "0.25"], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert finished.returncode == 0, finished.stderr
    assert "\x1b[" not in finished.stdout
    assert "  bake: 1s, 4 intervals" in finished.stdout and "left;" not in finished.stdout
