#!/usr/bin/env bash
# Creates .venv with the exact pins of requirements/lock.txt, then TensorFlow Federated 0.87.0 without
# its dependency metadata (it pins jaxlib==0.4.14, which the package index does not serve), then tff-fcl
# itself in editable mode. Idempotent: a stamp keyed by the lock file's hash makes a second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.10 python3.9 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
"$PYTHON" scripts/check_python.py
VENV=.venv
TFF_PIN="tensorflow-federated==0.87.0"
stamp_key=$(cat requirements/lock.txt setup.cfg | sha256sum | cut -c1-16)
stamp="$VENV/.tff_fcl_installed_$stamp_key"
if [ -f "$stamp" ]; then
  echo "install: .venv is up to date ($stamp)"
  exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/lock.txt
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$TFF_PIN"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
"$VENV/bin/python" -m pip check >/dev/null 2>&1 || "$VENV/bin/python" -m pip check | grep -v -E "jaxlib|tensorflow-federated" || true
rm -f "$VENV"/.tff_fcl_installed_*
touch "$stamp"
echo "install: .venv ready in $(( $(date +%s) - start )) s"
