"""Where the PostgreSQL server comes from: a setting, PATH (the Nix shell and the container put
it there), or the places Debian/Ubuntu and Homebrew install it. Resolved once by the plan, so
`up` can say which one it uses."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from services.engine.errors import StackError

SERVER_TOOLS = ("initdb", "postgres", "pg_isready")
INSTALL_HINT = (
    "install PostgreSQL (`apt-get install postgresql` on Debian/Ubuntu, "
    "`brew install postgresql@16` on macOS, or enter the Nix shell: `nix develop`), "
    "set H2OPS_POSTGRES_BIN to the folder holding initdb and postgres, "
    "or fall back to H2OPS_DATABASE=sqlite"
)
# Where distributions put the server, each a glob whose `*` is the major version.
VERSIONED_HOMES = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew on Apple silicon
    "/usr/local/opt/postgresql@*/bin",  # Homebrew on Intel
)


class PostgresNotFound(StackError):
    """No PostgreSQL server here; the message says what to install or set."""


@dataclass(frozen=True)
class PostgresServer:
    """One PostgreSQL installation: the folder with its programs, its version, how it was found."""

    bin_dir: Path
    version: str
    found: str

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def describe(self) -> str:
        return f"PostgreSQL {self.version} from {self.bin_dir} ({self.found})"


def _has_server(folder: Path) -> bool:
    return all((folder / tool).is_file() for tool in SERVER_TOOLS)


def _major(folder: Path) -> int:
    match = re.search(r"(\d+)", folder.parent.name)
    return int(match.group(1)) if match else 0


def candidates(configured: Path | None) -> list[tuple[Path, str]]:
    """Folders to try, best first, each with how it was found."""
    if configured is not None:
        return [(configured.expanduser(), f"H2OPS_POSTGRES_BIN={configured}")]
    found: list[tuple[Path, str]] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        # The real folder (Debian links initdb into /usr/local/bin), where pg_isready is too.
        found.append((Path(on_path).resolve().parent, "initdb on PATH"))
    for pattern in VERSIONED_HOMES:
        root = Path("/")
        folders = sorted(root.glob(pattern.lstrip("/")), key=_major, reverse=True)
        found += [(folder, f"the highest version in {pattern}") for folder in folders]
    for brew in ("/opt/homebrew/opt/postgresql/bin", "/usr/local/opt/postgresql/bin"):
        found.append((Path(brew), f"Homebrew's {brew}"))
    return found


def find_server(configured: Path | None) -> PostgresServer:
    """The server to run; PostgresNotFound saying what to install or set when there is none."""
    for folder, how in candidates(configured):
        if _has_server(folder):
            return PostgresServer(folder, _version(folder / "postgres"), how)
    if configured is not None:
        missing = [tool for tool in SERVER_TOOLS if not (configured / tool).is_file()]
        raise PostgresNotFound(
            f"H2OPS_POSTGRES_BIN={configured} has no {', '.join(missing)}: point it at the "
            f"folder that holds PostgreSQL's initdb and postgres, or unset it to search; "
            f"else {INSTALL_HINT}"
        )
    raise PostgresNotFound(
        "H2OPS_DATABASE=postgres but no PostgreSQL server was found (initdb on PATH, "
        f"{', '.join(VERSIONED_HOMES)}): {INSTALL_HINT}"
    )


def _version(postgres: Path) -> str:
    """`postgres --version` says e.g. "postgres (PostgreSQL) 16.4": the version."""
    try:
        output = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise PostgresNotFound(f"{postgres} --version failed ({error}): {INSTALL_HINT}") from None
    match = re.search(r"\(PostgreSQL\) (\S+)", output)
    return match.group(1) if match else "unknown"
