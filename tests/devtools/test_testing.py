"""The suite's own rules (devtools/testing.py), shown on small test files run by pytester in this
process: an unmarked test that starts a process fails, a skip under CI fails unless allowed, and
`unavailable` skips here but fails under CI."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

STARTS_A_PROCESS = """
import subprocess
import pytest

def test_unmarked():
    subprocess.run(["true"], check=True)

@pytest.mark.stack
def test_marked():
    subprocess.run(["true"], check=True)
"""

FIXTURE_STARTS_A_PROCESS = """
import subprocess
import pytest

@pytest.fixture(scope="module")
def server():
    return subprocess.run(["true"], check=True).returncode

def test_uses_it(server):
    assert server == 0
"""

SKIPS = """
import pytest
from devtools.testing import unavailable

def test_plain_skip():
    pytest.skip("not today")

def test_missing_tool():
    unavailable("`frobnicate` is not on PATH: `apt-get install frobnicate` enables this check")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    raise AssertionError
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder with this repository's plugin, run in this process."""
    pytester.makeconftest('pytest_plugins = ["devtools.testing"]')
    pytester.makeini("[pytest]\nmarkers =\n    stack: starts processes\n")
    monkeypatch.delenv("CI", raising=False)
    return pytester


@pytest.mark.stack
def test_an_unmarked_test_that_starts_a_process_fails_and_a_marked_one_passes(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(test_processes=STARTS_A_PROCESS)
    result = suite.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_unmarked starts a process: mark it `stack`*"])


def test_a_fixture_that_starts_a_process_counts_for_its_unmarked_test(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(test_fixture=FIXTURE_STARTS_A_PROCESS)
    result = suite.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_uses_it starts a process*"])


def test_skips_are_skips_here(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_skips=SKIPS)
    result = suite.runpytest_inprocess("-p", "no:randomly", "-rs")
    result.assert_outcomes(skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["*apt-get install frobnicate*"])


def test_under_ci_every_skip_fails_but_an_expected_failure_stays(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    suite.makepyfile(test_skips=SKIPS)
    result = suite.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(failed=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*skipped under CI, and not on CI_ALLOWED_SKIPS*not today*",
            "*apt-get install frobnicate*under CI this fails instead of skipping*",
        ]
    )


def test_an_allowed_skip_stays_a_skip_under_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import devtools.testing

    monkeypatch.setenv("CI", "true")
    monkeypatch.setitem(
        devtools.testing.CI_ALLOWED_SKIPS, "test_skips.py::test_plain_skip", "shown here"
    )
    suite.makepyfile(test_skips=SKIPS)
    result = suite.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(skipped=1, failed=1, xfailed=1)


SHARED_STACK_USERS = """
import pytest

@pytest.fixture(scope="session")
def stack():  # stands in for the shared stack: only the name matters to the order
    return "the default stack"

@pytest.fixture(scope="session")
def stack_on_postgres():
    return "the postgres stack"

def test_first_in_the_file(stack_on_postgres):
    pass

def test_second_in_the_file(stack):
    pass

def test_third_in_the_file():
    pass
"""


def test_tests_without_a_shared_stack_run_first_then_each_stacks_users_in_turn(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(test_order=SHARED_STACK_USERS)
    result = suite.runpytest_inprocess("-p", "no:randomly", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_third_in_the_file PASSED*",
            "*test_second_in_the_file PASSED*",
            "*test_first_in_the_file PASSED*",
        ]
    )


def test_not_stack_deselects_the_users_of_process_fixtures_and_e2e_tests(
    suite: pytest.Pytester,
) -> None:
    """The markers exist before `-m` selects: the stack-free tier runs none of these."""
    suite.makeini("[pytest]\nmarkers =\n    stack: starts processes\n    e2e: end to end\n")
    suite.makepyfile(test_order=SHARED_STACK_USERS)
    suite.makepyfile(
        test_walk_end_to_end="import pytest\n\n@pytest.mark.e2e\ndef test_walk():\n    pass\n"
    )
    result = suite.runpytest_inprocess("-p", "no:randomly", "-v", "-m", "not stack")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["*test_third_in_the_file PASSED*"])


ONE_MODULE = """
def test_a():
    pass

def test_b():
    pass

def test_c():
    pass
"""


@pytest.mark.stack  # two xdist workers are processes
def test_under_two_workers_a_modules_tests_share_one_worker(suite: pytest.Pytester) -> None:
    """`nox -s test` runs two workers with `--dist loadgroup`: a module's fixtures (its own
    stack) and a shared stack's users must stay in one worker, or each worker starts its own
    and tests that build on each other's state see a fresh one."""
    suite.makepyfile(test_one_module=ONE_MODULE, test_other=ONE_MODULE)
    result = suite.runpytest_subprocess("-p", "no:randomly", "-n", "2", "--dist", "loadgroup", "-v")
    result.assert_outcomes(passed=6)
    workers_of: dict[str, set[str]] = {}
    for line in result.outlines:
        if " PASSED " in line:  # "[gw0] [ 16%] PASSED test_other.py::test_a@test_other.py"
            test = line.split(" PASSED ")[1]
            workers_of.setdefault(test.split("::")[0], set()).add(line.split("]")[0])
    assert len(workers_of) == 2, result.outlines
    assert all(len(workers) == 1 for workers in workers_of.values()), workers_of
