#!/usr/bin/env bash
# Installs the tools the tests need beyond cargo into .tools/ (ignored by git), once:
#   .tools/venv  — moto_server (the local AWS endpoint the moto tests start) and
#                  cargo-lambda (PyPI ships the binary and brings zig), pinned.
# Idempotent: a second run with the same pins does nothing and prints nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
CARGO_LAMBDA_VERSION=1.9.2
VENV=.tools/venv
STAMP="$VENV/.installed-moto-$MOTO_VERSION-cargo-lambda-$CARGO_LAMBDA_VERSION"

if [[ -f "$STAMP" && -x "$VENV/bin/moto_server" && -x "$VENV/bin/cargo-lambda" ]]; then
    exit 0
fi

PYTHON="${PYTHON:-$(command -v python3 || true)}"
if [[ -z "$PYTHON" ]]; then
    echo "install-tools: python3 is needed to install moto_server and cargo-lambda" >&2
    exit 1
fi

echo "install-tools: installing moto[server]==$MOTO_VERSION and cargo-lambda==$CARGO_LAMBDA_VERSION into $VENV" >&2
mkdir -p .tools
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "cargo-lambda==$CARGO_LAMBDA_VERSION"
rm -f "$VENV"/.installed-*
touch "$STAMP"
