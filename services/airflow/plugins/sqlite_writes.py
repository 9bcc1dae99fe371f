"""An Airflow plugin for the api-server on SQLite: one writing request at a time.

Airflow's audit log (`action_logging`, on every POST/PATCH/PUT/DELETE of the public API) commits
its row from an async dependency, that is on the server's event loop. With SQLite, a commit
waits while another connection holds the write lock. When that connection belongs to a request
of the same server, whose transaction ends only when the event loop runs its teardown, the two
wait for each other until SQLite's busy timeout fails one: 10 concurrent triggers gave 7 of 10
"Database error" answers after 25 s, and the components that waited as long crashed.
Letting one writing request in at a time removes the cycle; reads run as before. Each writing
request takes milliseconds, so a queue of 20 drains in seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.plugins_manager import AirflowPlugin

READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class OneWritingRequestAtATime:
    """ASGI middleware: requests that may write the metadata DB pass one at a time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.turn = asyncio.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in READ_ONLY_METHODS:
            await self.app(scope, receive, send)
            return
        async with self.turn:
            await self.app(scope, receive, send)


class SqliteWritesPlugin(AirflowPlugin):
    name = "h2ops_sqlite_writes"
    fastapi_root_middlewares = [  # noqa: RUF012 (Airflow reads this class attribute)
        {"middleware": OneWritingRequestAtATime, "name": "one writing request at a time"}
    ]
