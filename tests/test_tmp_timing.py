import subprocess, sys, time, pytest
from tests.devtools.test_init import clone, init, NAME
pytestmark = pytest.mark.stack
def test_t(tmp_path):
    t = time.monotonic(); copy = clone(tmp_path); print("clone", round(time.monotonic() - t, 2))
    t = time.monotonic(); init(copy, "--yes", "--name", NAME, "--force"); print("init", round(time.monotonic() - t, 2))
