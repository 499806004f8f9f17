#!/usr/bin/env bash
# Runs every test: unit, decision, model, adapter and end-to-end, including the ones
# against moto_server and the function binaries under cargo-lambda.
# Tools the tests need beyond cargo are installed here, idempotently, into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh
# moto_server and cargo-lambda (and the zig it brings) from the project's venv.
export PATH="$PWD/.tools/venv/bin:$PATH"
cargo test --workspace --all-targets "$@"
