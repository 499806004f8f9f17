#!/usr/bin/env bash
# Installs the tools scripts/check-infra.sh needs into .tools/infra-venv (ignored by git),
# once, pinned:
#   cfn-lint            — lints the template, before and after the SAM transform
#   aws-sam-translator  — the SAM transform, done offline (scripts/infra/transform.py)
#   checkov             — security and best-practice checks on the template
#   parliament          — lints every IAM policy document
# A venv of its own, apart from .tools/venv: checkov pins boto3/botocore versions that
# may not agree with moto's.
# Idempotent: a second run with the same pins does nothing and prints nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

CFN_LINT_VERSION=1.58.0
SAM_TRANSLATOR_VERSION=1.115.0
CHECKOV_VERSION=3.3.30
PARLIAMENT_VERSION=1.6.4
# parliament imports pkg_resources, which newer setuptools drop and newer Pythons'
# venvs do not include at all.
SETUPTOOLS_VERSION=75.8.0
VENV=.tools/infra-venv
STAMP="$VENV/.installed-cfn-lint-$CFN_LINT_VERSION-sam-$SAM_TRANSLATOR_VERSION-checkov-$CHECKOV_VERSION-parliament-$PARLIAMENT_VERSION-setuptools-$SETUPTOOLS_VERSION"

installed() {
    [[ -f "$STAMP" && -x "$VENV/bin/cfn-lint" && -x "$VENV/bin/checkov" && -x "$VENV/bin/parliament" ]]
}
if installed; then
    exit 0
fi

# Tests may start several checks at once: one installs, the others wait for it.
mkdir -p .tools
exec 9>.tools/.infra-venv.lock
if command -v flock >/dev/null; then
    flock 9
fi
if installed; then
    exit 0
fi

PYTHON="${PYTHON:-$(command -v python3 || true)}"
if [[ -z "$PYTHON" ]]; then
    echo "install-infra-tools: python3 is needed to install cfn-lint, aws-sam-translator, checkov and parliament" >&2
    exit 1
fi

echo "install-infra-tools: installing cfn-lint==$CFN_LINT_VERSION aws-sam-translator==$SAM_TRANSLATOR_VERSION checkov==$CHECKOV_VERSION parliament==$PARLIAMENT_VERSION (setuptools==$SETUPTOOLS_VERSION) into $VENV" >&2
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "cfn-lint==$CFN_LINT_VERSION" \
    "aws-sam-translator==$SAM_TRANSLATOR_VERSION" \
    "checkov==$CHECKOV_VERSION" \
    "parliament==$PARLIAMENT_VERSION" \
    "setuptools==$SETUPTOOLS_VERSION"
rm -f "$VENV"/.installed-*
touch "$STAMP"
