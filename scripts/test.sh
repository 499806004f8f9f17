#!/usr/bin/env bash
# Runs every test: unit, decision, model, adapter and end-to-end.
# Tools the tests need beyond cargo are installed here, idempotently, into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets "$@"
