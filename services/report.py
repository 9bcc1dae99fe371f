"""What `status` shows and `status --json` prints: the engine's status of every service with
what the plan resolved (S3 backend and why, database, credentials, client environment). The
test harness, the bench and the soak read it back with `StatusReport.from_json`, so this
module is the one owner of that wire format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.engine.status import ServiceStatus, StackStatus
from services.plan import StackPlan
from services.settings import Database


def status_report(plan: StackPlan, status: StackStatus) -> StatusReport:
    """The engine's status of `plan`'s stack, with what the plan resolved."""
    return StatusReport(
        status,
        plan.s3_backend,
        plan.s3_backend_reason,
        plan.settings.credentials,
        plan.client_environment(),
        plan.database,
    )


@dataclass(frozen=True)
class StatusReport:
    """One `status` of the stack, as the CLI prints it and its readers parse it."""

    stack: StackStatus
    s3_backend: str
    s3_backend_reason: str
    credentials: dict[str, str]
    environment: dict[str, str]
    database: Database = Database.SQLITE

    @property
    def services(self) -> list[ServiceStatus]:
        return self.stack.services

    def service(self, name: str) -> ServiceStatus:
        return self.stack.service(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "services": [service.to_json() for service in self.stack.services],
            "s3_backend": self.s3_backend,
            "s3_backend_reason": self.s3_backend_reason,
            "state_dir": self.stack.state_dir,
            "credentials": self.credentials,
            "environment": self.environment,
            "database": str(self.database),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatusReport:
        services = [ServiceStatus.from_json(service) for service in data["services"]]
        return cls(
            StackStatus(services, data["state_dir"]),
            data["s3_backend"],
            data["s3_backend_reason"],
            data["credentials"],
            data["environment"],
            Database(data.get("database", Database.SQLITE.value)),
        )
