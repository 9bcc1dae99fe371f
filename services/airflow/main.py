"""Run an `airflow` command, skipping the interpreter's final garbage collection.

At exit CPython collects every object still alive; for an Airflow component that is a few
hundred MB of objects and about 3-4 s of CPU after the component has already shut down cleanly
(measured with py-spy in `gc_collect_main`), which made `nox -s down` wait. Freezing the heap
as the last exit step lets the process end at once; nothing is left to clean up by then.
"""

from __future__ import annotations

import atexit
import gc
import sys


def run_airflow(arguments: list[str]) -> None:
    """`airflow ARGUMENTS` in this process; exits with its exit code."""
    from airflow.__main__ import main as airflow_main

    atexit.register(gc.freeze)  # registered first, so it runs after Airflow's own handlers
    sys.argv = ["airflow", *arguments]
    sys.exit(airflow_main())


if __name__ == "__main__":
    run_airflow(sys.argv[1:])
