#!/usr/bin/env bash
# Smoke-tests the built app itself, not the source tree: dist/convsim/convsim, the program path
# given, or a release archive given (convsim-….tar.gz from packaging/archive.sh), which is first
# unpacked into the temporary folder the way a user would. A fresh CONVSIM_HOME in a temporary
# folder, a PATH without any venv, run from that folder so nothing of the checkout can be
# imported, and without network access where `unshare -n` works.
#
# Steps: --version, doctor, the README and licence notices, import of the sample chat bundled in
# the app (`import --sample`), dataset, a 2-step training run on the bundled default base,
# export, memory search and a pinned fact added, one simulated reply (given that fact), a
# steering vector built and calibrated (torch + llama.cpp) and a steered reply, feedback and an
# update (a new version, scored on llama.cpp), the TUI
# started and quit headless (app --smoke), doctor again,
# then `forget` of the chat (everything made from it goes) and the empty chat list.
# Every step runs even when an earlier one failed; the summary names the failed ones and the
# exit status is 1 if any did. Works for the one-file build too (its notices lie beside it).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=$(realpath "${1:-$ROOT/dist/convsim/convsim}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/convsim-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 2
if [[ $TARGET == *.tar.gz ]]; then
    t0=$(date +%s.%N)
    mkdir unpacked && tar -C unpacked -xzf "$TARGET" || {
        echo "smoke: could not unpack $TARGET" >&2
        exit 2
    }
    echo "smoke: unpacked $TARGET in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
    APP=$WORK/unpacked/convsim/convsim
else
    APP=$TARGET
fi
DIST=$(dirname "$APP")
[ -x "$APP" ] || { echo "smoke: no built app at $APP; run: bash packaging/build.sh" >&2; exit 2; }
export CONVSIM_HOME=$WORK/home
unset CONVSIM_BASE_MODELS CONVSIM_CACHE PYTHONPATH PYTHONHOME VIRTUAL_ENV
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Offline for real when this machine lets us drop the network (root, or user namespaces).
NET=()
if unshare -rn true 2>/dev/null; then NET=(unshare -rn); fi

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
step import "$APP" import --sample # the sample chat inside the build
expect import "as chat 1"
step dataset "$APP" dataset 1 --as Sam
step train "$APP" train 1 --as Sam --steps 2 --seq-len 128 --batch-size 2
expect train "Model sam-1 ready"
step export "$APP" export sam-1
expect export "sam-1-q8_0.gguf"
step "memory search" "$APP" memory search 1 "race day running" --json --k 3 # the bundled MiniLM
expect "memory search" '"message_ids": \['
step "memory add" "$APP" memory add 1 Riya job "physio at the city clinic"
expect "memory add" "^Added:"
step "memory pin" "$APP" memory pin 1 # pinned: in every prompt
step simulate "$APP" simulate sam-1 --turns 1 --max-tokens 24 --seed 0 --json # with that fact
expect simulate '"memories": \[1\]'
expect simulate '"speaker": "Sam"'
step "steer build" "$APP" steer build sam-1 --axis happy --threads 2 # pairs, torch, llama.cpp
expect "steer build" "^Vector 'happy'"
step "steer simulate" "$APP" simulate sam-1 --turns 1 --max-tokens 16 --seed 0 --steer happy=1 --json
expect "steer simulate" '"speaker": "Sam"'
step feedback "$APP" feedback add sam-1 --reply "u coming later?" --better "you coming later?"
expect feedback "better on sam-1 version 1"
step learn "$APP" learn sam-1 --json --slice-items 2 --max-perplexity-rise 10 --max-hits-drop 1
expect learn '"version": 2, "status": "done", "promoted": true'
step versions "$APP" models versions sam-1
expect versions '^\* v2'
if ! step "app --smoke" "$APP" app --smoke; then
    echo "!! the TUI did not start and quit headless (convsim app --smoke); see its output above"
fi
step "doctor after" "$APP" doctor --json
expect "doctor after" '"name": "base model", "status": "ok"'
expect "doctor after" '"name": "torch cache", "status": "ok"'
expect "doctor after" '"name": "store", "status": "ok"'
step forget "$APP" forget chat 1 --yes # the chat, its dataset, sam-1 and its exports
expect forget "model sam-1"
step "chats after" "$APP" chats
expect "chats after" "No chats yet"

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
