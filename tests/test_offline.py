"""Offline: once `.venv` is synced, `nox -s up` and the example pipeline need no network.

Runs the sessions and the end-to-end test in a new network namespace that has only loopback
(`unshare --net`; as an ordinary user, inside a user namespace where the kernel allows one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from devtools.harness import StackRun
from services.settings import REPO_ROOT

pytestmark = pytest.mark.e2e

NO_ROUTE_OUT = """
import socket
try:
    socket.create_connection(("pypi.org", 443), timeout=5)
except OSError as error:
    print("no network:", error)
else:
    raise SystemExit("the namespace reaches pypi.org: this is not an offline run")
"""


def offline_prefix() -> list[str]:
    """The command prefix that runs a command with loopback only, or skip with the reason."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not unshare or not ip:
        pytest.skip("needs `unshare` (util-linux) and `ip` (iproute2) to cut the network off")
    prefix = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--map-root-user", "--net"]
    probe = subprocess.run([*prefix, ip, "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this kernel refuses `{' '.join(prefix)}`: {probe.stderr.strip()}")
    return prefix


@pytest.mark.timeout(1500)  # up, down and a whole e2e run, one after another
def test_up_and_the_example_pipeline_need_no_network(tmp_path):
    prefix = offline_prefix()
    run = StackRun(tmp_path)
    python, noxfile = sys.executable, str(REPO_ROOT / "noxfile.py")
    script = " && ".join(
        [
            "ip link set lo up",
            f"{python} -c '{NO_ROUTE_OUT}'",
            f"{python} {noxfile} -s up",
            f"{python} {noxfile} -s status",
            f"{python} {noxfile} -s down",
            f"{python} -m pytest -p no:cacheprovider -q project/tests/test_e2e.py"
            " -k stack_on_sqlite",  # the default stack; the others differ in no download
        ]
    )
    try:
        done = subprocess.run(
            [*prefix, "sh", "-c", script],
            cwd=REPO_ROOT,
            env=run.env,
            capture_output=True,
            text=True,
            timeout=1400,
        )
    finally:
        run.down()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "no network:" in output
    assert "Session up was successful" in output and "Session down was successful" in output
    assert re.search(r"^\d+ passed", output, re.MULTILINE), output[-3000:]
