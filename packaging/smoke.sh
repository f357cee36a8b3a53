#!/usr/bin/env bash
# Smoke-tests the built app itself (dist/convsim/convsim, or the path given), not the source tree:
# a fresh CONVSIM_HOME in a temporary folder, a PATH without any venv, run from that folder so
# nothing of the checkout can be imported, and without network access where `unshare -n` works.
#
# Steps: --version, doctor, the README and licence notices, import of the sample chat bundled in
# the app, dataset, a 2-step training run on the bundled default base, export, one simulated
# reply, the TUI started and quit headless (app --smoke), doctor again. Every step runs even when
# an earlier one failed; the summary names the failed ones and the exit status is 1 if any did.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
APP=$(realpath "${1:-$ROOT/dist/convsim/convsim}")
DIST=$(dirname "$APP")
[ -x "$APP" ] || { echo "smoke: no built app at $APP; run: bash packaging/build.sh" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/convsim-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 2
export CONVSIM_HOME=$WORK/home
unset CONVSIM_BASE_MODELS CONVSIM_CACHE PYTHONPATH PYTHONHOME VIRTUAL_ENV
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Offline for real when this machine lets us drop the network (root, or user namespaces).
NET=()
if unshare -rn true 2>/dev/null; then NET=(unshare -rn); fi
SAMPLE=$(find "$DIST" -path "*convsim/core/samples/sample_whatsapp.txt" | head -n 1)

failed=()    # what went wrong, one line each
bad_steps=() # the names of the steps that failed (a step may fail more than one way)
steps=0
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
step() {  # step NAME COMMAND... : runs it, shows its output and time, records a failure
    local name=$1 t0 rc
    shift
    echo "== $name: $*"
    t0=$(now)
    "${NET[@]}" "$@" >"$WORK/out.txt" 2>&1
    rc=$?
    tail -n 25 "$WORK/out.txt"
    echo "-- $name: exit $rc, $(since "$t0") s"
    steps=$((steps + 1))
    [ "$rc" -eq 0 ] || { failed+=("$name: exit $rc"); bad_steps+=("$name"); }
    return "$rc"
}
expect() {  # expect NAME PATTERN : the last step's output must contain PATTERN
    grep -q -- "$2" "$WORK/out.txt" && return 0
    echo "!! $1: output lacks '$2'"
    failed+=("$1: output lacks '$2'")
    bad_steps+=("$1")
}

start=$(now)
echo "smoke: $APP (network: ${NET[*]:-not isolated}), CONVSIM_HOME=$CONVSIM_HOME"
step version "$APP" --version
expect version "^convsim [0-9]"
expect version "^llama.cpp: llama-cpp-python"
expect version "^torch: "
expect version "^build: frozen"
step doctor "$APP" doctor
step notices ls "$DIST/README.md" "$DIST/licenses/convsim/LICENSE" \
    "$DIST/licenses/gemma3-270m/GEMMA_TERMS.html" "$DIST/licenses/gemma3-270m/NOTICE.md"
if [ -z "$SAMPLE" ]; then
    echo "!! the sample chat is not in the build"
    failed+=("import: the sample chat is not in the build")
    bad_steps+=("import")
fi
step import "$APP" import "$SAMPLE"
expect import "as chat 1"
step dataset "$APP" dataset 1 --as Sam
step train "$APP" train 1 --as Sam --steps 2 --seq-len 128 --batch-size 2
expect train "Model sam-1 ready"
step export "$APP" export sam-1
expect export "sam-1-q8_0.gguf"
step simulate "$APP" simulate sam-1 --turns 1 --max-tokens 24 --seed 0
expect simulate "^\[Sam\]"
if ! step "app --smoke" "$APP" app --smoke; then
    echo "!! the TUI did not start and quit headless (convsim app --smoke); see its output above"
fi
step "doctor after" "$APP" doctor --json
expect "doctor after" '"name": "base model", "status": "ok"'
expect "doctor after" '"name": "torch cache", "status": "ok"'

echo "== build size: $(du -sh "$DIST" | cut -f1) ($DIST)"
echo "== smoke wall time: $(since "$start") s"
bad=0
if [ "${#failed[@]}" -gt 0 ]; then
    echo "SMOKE FAILED:"
    printf "  %s\n" "${failed[@]}"
    bad=$(printf "%s\n" "${bad_steps[@]}" | sort -u | wc -l)
fi
echo "smoke: $((steps - bad)) passed, $bad failed"
[ "$bad" -eq 0 ]
