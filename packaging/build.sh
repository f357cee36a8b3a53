#!/usr/bin/env bash
# Builds the one-folder convsim app for this platform into dist/convsim/ with PyInstaller.
#
# Uses the venv of tests/run.sh (./.venv), or the one named by $CONVSIM_VENV; creates ./.venv
# the same way tests/run.sh does when there is none. convsim is installed from this checkout
# as a regular (non-editable) package into build/stage for PyInstaller to analyse.
# Prints the build's wall time and size; `bash packaging/smoke.sh` then tests the result.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${CONVSIM_VENV:-$ROOT/.venv}
PY=$VENV/bin/python
start=$(date +%s)
ONEFILE=0
case "${1:-}" in
    "") ;;
    --onefile) ONEFILE=1 ;; # dist/convsim-onefile/convsim: one program, unpacked at each start
    *) echo "usage: bash packaging/build.sh [--onefile]" >&2; exit 2 ;;
esac

if [ ! -x "$PY" ]; then
    echo "== creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
    # The CPU build of torch first: an unpinned torch could pull a multi-GB CUDA build.
    "$PY" -m pip install -q "torch==2.13.0"
    "$PY" -m pip install -q -e ".[dev]"
fi
"$PY" -m PyInstaller --version >/dev/null 2>&1 || "$PY" -m pip install -q "pyinstaller>=6.10"

echo "== staging convsim (regular install of this checkout into build/stage)"
# setuptools builds the wheel in build/lib: a stale copy there could ship deleted files.
rm -rf build/stage build/lib build/bdist.*
"$PY" -m pip install -q --no-deps --no-compile --target build/stage .

echo "== pyinstaller"
if [ "$ONEFILE" = 1 ]; then
    CONVSIM_ONEFILE=1 "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
        --distpath dist/convsim-onefile --workpath build/pyinstaller-onefile packaging/convsim.spec
    end=$(date +%s)
    echo "== built dist/convsim-onefile/convsim in $((end - start)) s"
    du -sh dist/convsim-onefile/convsim
    exit 0
fi
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/convsim.spec

end=$(date +%s)
echo "== built dist/convsim in $((end - start)) s"
du -sh dist/convsim
du -sh dist/convsim/_internal/* | sort -h | tail -8
