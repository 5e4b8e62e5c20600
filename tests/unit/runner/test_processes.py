"""Process hygiene (runbook_executors.processes) as root and as an ordinary user.

The runner relies on two prctl options that need no privilege: a child subreaper adopts a
grandchild that started its own session, and a parent-death signal stops a step whose runner
was killed. This runs the same check as this user and, when this user is root, as `nobody`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import runbook_executors.processes as processes

CHECK = r'''
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import processes
assert processes.become_subreaper(), "PR_SET_CHILD_SUBREAPER refused"
env = {**os.environ, processes.ATTEMPT_ENV: "run1/s/1/"}
step = subprocess.Popen(
    [sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
     "'import time; time.sleep(60)'], start_new_session=True, stdout=subprocess.DEVNULL); print(p.pid)"],
    env=env, stdout=subprocess.PIPE, text=True)
grandchild = int(step.stdout.readline()); step.wait()
time.sleep(0.3)
assert processes._ppid(grandchild) == os.getpid(), "the orphan was not adopted"
assert processes.leftovers("run2/") == [], "another run's token matched"
assert processes.leftovers("run1/") == [grandchild], processes.leftovers("run1/")
processes.kill_and_reap([grandchild])
assert not os.path.exists(f"/proc/{grandchild}"), "not killed and reaped"
out = subprocess.run([sys.executable, "-c", """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import processes
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    processes.die_with_parent(os.getppid())
    os.write(w, b'x'); time.sleep(30); os._exit(0)
os.read(r, 1); print(pid, flush=True); os._exit(0)
""", sys.argv[1]], capture_output=True, text=True, check=True)
child = int(out.stdout)
deadline = time.monotonic() + 5
while time.monotonic() < deadline and processes._alive(child):
    time.sleep(0.05)
assert not processes._alive(child), "the parent-death signal did not stop the child"
print("ok")
'''


def _check(prefix: list[str], python: str) -> None:
    with tempfile.TemporaryDirectory(prefix="hygiene-") as tmp:  # in /tmp: nobody may enter it
        folder = Path(tmp)
        folder.chmod(0o755)
        shutil.copy(processes.__file__, folder / "processes.py")
        (folder / "check.py").write_text(CHECK)
        for item in folder.iterdir():
            item.chmod(0o644)
        _run(prefix, python, folder)


def _run(prefix: list[str], python: str, folder: Path) -> None:
    proc = subprocess.run(
        [*prefix, python, str(folder / "check.py"), str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux prctl")
def test_hygiene_as_this_user() -> None:
    _check([], sys.executable)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser") or not Path("/usr/bin/python3").exists(),
    reason="needs root to switch to nobody, and a system python nobody may run",
)
def test_hygiene_as_nobody() -> None:
    _check(["runuser", "-u", "nobody", "--"], "/usr/bin/python3")
