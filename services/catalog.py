"""Every service of the stack, in start order: the one place that lists them.

A new service is a folder beside these (its `service.py` declares it, next to the programs
supervisord runs for it) and one line in CATALOG. The engine reads the declarations and knows
none of them by name.
"""

from __future__ import annotations

from collections.abc import Callable

from services.airflow import service as airflow
from services.engine.records import Declared
from services.engine.stack import Stack
from services.jupyter import service as jupyter
from services.mlflow import service as mlflow
from services.plan import StackPlan
from services.postgres import service as postgres
from services.s3 import service as s3
from services.serving import service as serving

Declare = Callable[[StackPlan], Declared]

CATALOG: tuple[Declare, ...] = (
    s3.declare,
    postgres.declare,
    mlflow.declare,
    airflow.declare,
    jupyter.declare,
    serving.declare,
)


def declare_services(plan: StackPlan) -> list[Declared]:
    """Each service as this plan runs it (or why it is switched off), in start order."""
    return [declare(plan) for declare in CATALOG]


def stack_of(plan: StackPlan) -> Stack:
    """The engine, given every declared service and what the plan resolved for them."""
    return Stack(
        layout=plan.layout,
        declared=declare_services(plan),
        environment=plan.program_environment(),
        host=plan.settings.host,
        ready_timeout=plan.settings.ready_timeout,
        home=plan.root,
    )
