#!/usr/bin/env bash
# The package as a user installs it: an sdist, a wheel built from that sdist (CPU kernels only, to
# keep CI short; `make setup` compiles the CUDA kernels), the wheel installed into a fresh venv
# outside the checkout, and tests/install_smoke.py run there from another folder.
# Torch is not reinstalled: a .pth file puts the project venv's site-packages after the fresh
# venv's own, and the wheel is installed with --no-deps; irnet_fast itself comes only from the wheel.
# Usage: tests/install_check.sh PYTHON (the project venv's python, with torch, setuptools, wheel).
set -euo pipefail
PY="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/irnet_fast_install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export FORCE_ONLY_CPU=1 MAX_JOBS="${MAX_JOBS:-2}" PATH="$(dirname "$PY"):$PATH"

cd "$REPO"
"$PY" setup.py -q sdist -d "$WORK/dist" > "$WORK/sdist.log" 2>&1 || { cat "$WORK/sdist.log"; exit 1; }
SDIST="$(ls "$WORK"/dist/irnet_fast-*.tar.gz)"
echo "install check: sdist $(basename "$SDIST"), building a wheel from it"
"$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/wheels" "$SDIST" > "$WORK/wheel.log" 2>&1 \
    || { tail -40 "$WORK/wheel.log"; exit 1; }
WHEEL="$(ls "$WORK"/wheels/irnet_fast-*.whl)"

"$PY" -m venv "$WORK/venv"
SITE="$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$SITE/project_site_packages.pth"
"$WORK/venv/bin/python" -m pip install -q --no-deps --no-index "$WHEEL"

mkdir "$WORK/elsewhere" && cp "$REPO/tests/install_smoke.py" "$WORK/elsewhere/"
cd "$WORK/elsewhere"
env -u PYTHONPATH "$WORK/venv/bin/python" install_smoke.py "$REPO"
