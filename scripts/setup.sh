#!/usr/bin/env bash
# Idempotent setup for a fresh Debian bookworm machine: a venv with the pinned
# Python dependencies (hash-checked), the project installed editable, and the
# external programs the tests use (Helm 3.19, Helm 4, Docker Compose v2).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.deps-$(sha256sum requirements/dev.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements/dev.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  rm -f .venv/.deps-*
  touch "$stamp"
fi
.venv/bin/python scripts/install_tools.py
