#!/usr/bin/env bash
# Runs every test: unit, decision, model, adapter and end-to-end, including the ones
# against moto_server, the function binaries under cargo-lambda, and the offline checks
# of the deployment template (tests/tests/infra.rs runs scripts/check-infra.sh).
# Tools the tests need beyond cargo are installed here, idempotently, into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh
bash scripts/install-infra-tools.sh
# moto_server and cargo-lambda (and the zig it brings) from the project's venv.
export PATH="$PWD/.tools/venv/bin:$PATH"
cargo test --workspace --all-targets "$@"
