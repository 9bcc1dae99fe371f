"""The one error type a user acts on.

Everything that refuses, fails or gives up for a reason the user can fix (a taken port, a
setting, a state dir open to others, a service that did not become healthy) raises a
`StackError` whose message says what went wrong and what to do; `h2ops` prints it as a
message. Any other exception is a bug, and shows its traceback.
"""

from __future__ import annotations


class StackError(RuntimeError):
    """Something the user can fix; the message says what went wrong and what to do."""
