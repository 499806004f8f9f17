#!/usr/bin/env bash
# Runs cloud-init itself over the nodeadm user data Capstan writes (the golden files of
# shared/reconcile/tests/golden/, or the files given): cloud-init's own MIME processing
# (cloudinit.user_data.UserDataProcessor) must find the NodeConfig part and the class's
# part with the expected content types, and `cloud-init schema` must accept every
# #cloud-config part.
#
#   bash scripts/check-user-data.sh [FILE.mime ...]
#
# cloud-init is not on PyPI: its Debian package (pure Python) is downloaded with
# `apt-get download` and unpacked into .tools/cloud-init (ignored by git), with the
# Python modules it imports pip-installed into .tools/cloud-init/venv. Once; ~15 s.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/.tools/cloud-init"
STAMP="$DIR/.installed"
if [[ ! -f "$STAMP" ]]; then
    mkdir -p "$DIR"
    exec 9>"$ROOT/.tools/.cloud-init.lock"
    command -v flock >/dev/null && flock 9
    if [[ ! -f "$STAMP" ]]; then
        echo "check-user-data: installing cloud-init (Debian package) into $DIR" >&2
        (cd "$DIR" && rm -f cloud-init_*.deb &&
            { apt-get download cloud-init >/dev/null 2>&1 ||
                { apt-get update >/dev/null && apt-get download cloud-init >/dev/null; }; })
        dpkg-deb -x "$DIR"/cloud-init_*.deb "$DIR/root"
        python3 -m venv "$DIR/venv"
        "$DIR/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "PyYAML==6.0.2" "jsonschema==4.23.0" "Jinja2==3.1.6" "configobj==5.0.9" \
            "jsonpatch==1.33" "requests==2.32.3"
        basename "$DIR"/cloud-init_*.deb >"$STAMP"
    fi
fi
export PYTHONPATH="$DIR/root/usr/lib/python3/dist-packages"
PY="$DIR/venv/bin/python"

FILES=("$@")
if [[ ${#FILES[@]} -eq 0 ]]; then
    FILES=("$ROOT"/shared/reconcile/tests/golden/*.mime)
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/capstan-user-data.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
for f in "${FILES[@]}"; do
    "$PY" - "$f" "$WORK" <<'PYCODE' || { echo "check-user-data: FAILED: $f" >&2; exit 1; }
import os, subprocess, sys
from cloudinit import user_data
path, work = sys.argv[1], sys.argv[2]
msg = user_data.UserDataProcessor(None).process(open(path, "rb").read())
parts = [p for p in msg.walk() if p.get_content_maintype() != "multipart"]
types = [p.get_content_type() for p in parts]
if not types or types[0] != "application/node.eks.aws":
    sys.exit(f"{path}: cloud-init sees parts {types}, the first not application/node.eks.aws")
if any(t in ("text/plain", "text/x-not-multipart") for t in types):
    sys.exit(f"{path}: cloud-init would ignore a part: {types}")
for i, p in enumerate(parts):
    if p.get_content_type() == "text/cloud-config":
        part = os.path.join(work, f"part-{i}.yaml")
        with open(part, "wb") as out:
            out.write(p.get_payload(decode=True))
        r = subprocess.run([sys.executable, "-m", "cloudinit.cmd.main", "schema", "--config-file", part],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{path} part {i}: cloud-init schema: {r.stdout}{r.stderr}")
print(f"check-user-data: ok: {os.path.basename(path)}: {', '.join(types)}")
PYCODE
done
