#!/usr/bin/env bash
# Checks the deployment template offline, with the real tools, and fails on the first
# check that fails (saying which):
#   1. cfn-lint on the SAM template;
#   2. the SAM transform, offline (aws-sam-translator, scripts/infra/transform.py), then
#      cfn-lint on the result: cfn-lint does not look inside AWS::Serverless::Function,
#      so runtime, architectures and event source mappings are only checked here;
#   3. checkov on the SAM template and on the transformed one: every failed check must
#      be fixed or suppressed in the template's Metadata with a written reason;
#   4. scripts/infra/check_iam.py: parliament on every IAM policy (and on the example
#      policies in infra/policies/), plus the project's own least-privilege rules;
#   5. scripts/infra/check_rbac.py: the workload clusters' RBAC manifest grants no verb
#      beyond the workload port's, and no "*".
#
#   bash scripts/check-infra.sh [TEMPLATE [RBAC]]
#   # defaults: infra/template.yaml, infra/rbac/capstan-workload.yaml
#
# The template may live anywhere (tests check mutated copies in a temp dir); scratch
# files go to a temp dir that is removed on exit. The tools are installed into
# .tools/infra-venv once (scripts/install-infra-tools.sh). Takes ~15 s here.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TEMPLATE="${1:-$ROOT/infra/template.yaml}"
if [[ ! -f "$TEMPLATE" ]]; then
    echo "check-infra: no template at $TEMPLATE" >&2
    exit 1
fi
TEMPLATE="$(cd "$(dirname "$TEMPLATE")" && pwd)/$(basename "$TEMPLATE")"
RBAC="${2:-$ROOT/infra/rbac/capstan-workload.yaml}"
if [[ ! -f "$RBAC" ]]; then
    echo "check-infra: no RBAC manifest at $RBAC" >&2
    exit 1
fi

bash "$ROOT/scripts/install-infra-tools.sh"
BIN="$ROOT/.tools/infra-venv/bin"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/capstan-check-infra.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

fail() {
    echo "check-infra: FAILED: $*" >&2
    exit 1
}
ok() {
    echo "check-infra: ok: $*"
}

# 1. The template as written. Any error or warning fails.
"$BIN/cfn-lint" -- "$TEMPLATE" ||
    fail "cfn-lint on $TEMPLATE (see the lines above)"
ok "cfn-lint on the SAM template"

# 2. The SAM transform, then the plain CloudFormation it gives.
TRANSFORMED="$WORK/transformed.json"
"$BIN/python" "$ROOT/scripts/infra/transform.py" --region us-east-1 "$TEMPLATE" "$TRANSFORMED" ||
    fail "the SAM transform (aws-sam-translator) of $TEMPLATE"
# The transformed file is deleted on exit: name each problem by its resource path.
if ! "$BIN/cfn-lint" --format json -- "$TRANSFORMED" >"$WORK/cfn-lint.json"; then
    if ! "$BIN/python" - "$WORK/cfn-lint.json" >&2 <<'PY'
import json, sys
for m in json.load(open(sys.argv[1])):
    path = "/".join(str(p) for p in m["Location"].get("Path") or [])
    print(f"{m['Rule']['Id']} {m['Message']}\n  at {path} (after the SAM transform)")
PY
    then
        cat "$WORK/cfn-lint.json" >&2
    fi
    fail "cfn-lint on the SAM-transformed template (functions, event source mappings; see above)"
fi
ok "SAM transform, and cfn-lint on its result"

# 3. checkov on both, offline (--skip-download: no guidelines fetched). A template it
#    cannot parse, or in which it finds nothing to check, fails too.
CHECKOV_JSON="$WORK/checkov.json"
if ! "$BIN/checkov" --quiet --compact --skip-download --framework cloudformation \
    -f "$TEMPLATE" -f "$TRANSFORMED" \
    -o cli -o json --output-file-path "console,$CHECKOV_JSON" >"$WORK/checkov.log" 2>&1; then
    grep -v -e '^$' "$WORK/checkov.log" >&2 || true
    fail "checkov: failed checks above (fix them, or suppress each in the resource's Metadata.checkov.skip with a reason)"
fi
"$BIN/python" - "$CHECKOV_JSON" <<'PY' || fail "checkov did not check the template (see above)"
import json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
summary = [r.get("summary", {}) for r in reports]
resources = sum(s.get("resource_count", 0) for s in summary)
errors = sum(s.get("parsing_errors", 0) for s in summary)
failed = sum(s.get("failed", 0) for s in summary)
if errors or failed or resources == 0:
    print(f"checkov: {resources} resources, {errors} parsing errors, {failed} failed", file=sys.stderr)
    sys.exit(1)
PY
ok "checkov on the SAM and the transformed template"

# 4. IAM: parliament and the project's own rules.
"$BIN/python" "$ROOT/scripts/infra/check_iam.py" "$TRANSFORMED" --policies "$ROOT/infra/policies" ||
    fail "IAM policies (parliament / the project's least-privilege rules, see above)"
ok "IAM policies (parliament, least-privilege rules)"

# 5. The workload clusters' RBAC: exactly the workload port's verbs.
"$BIN/python" "$ROOT/scripts/infra/check_rbac.py" "$RBAC" ||
    fail "the RBAC manifest $RBAC (verbs beyond the workload port's, see above)"
ok "RBAC manifest (the workload port's verbs only)"
