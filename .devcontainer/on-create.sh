#!/usr/bin/env bash
# Runs once when the container is created, and in Codespaces prebuilds: nothing user-specific.
# Installs direnv for the VS Code direnv extension and for terminals, built from the nixpkgs
# that flake.lock pins (so the flake stays the single source of truth for tools).
set -euo pipefail
cd "$(dirname "$0")/.."

# Built as the container user (root would trip git's ownership check on the checkout);
# the out-link keeps it from being garbage-collected.
state="$HOME/.local/state/h2ops"
mkdir -p "$state"
nix build --inputs-from . nixpkgs#direnv --out-link "$state/direnv"
sudo ln -sf "$state/direnv/bin/direnv" /usr/local/bin/direnv
direnv version
