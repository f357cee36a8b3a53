#!/usr/bin/env bash
# Packs the one-folder build (dist/convsim/, from packaging/build.sh) into the archive users
# download: dist/convsim-VERSION-OS-ARCH.tar.gz, plus its .sha256 beside it. Unpacked anywhere,
# it gives back the convsim/ folder. Prints the archive's path, size and the time it took.
# `bash packaging/smoke.sh dist/convsim-….tar.gz` unpacks it in a temp folder and tests that.
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=dist
[ -x "$DIST/convsim/convsim" ] || {
    echo "archive: no build in $DIST/convsim; run: bash packaging/build.sh" >&2
    exit 2
}
start=$(date +%s)
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' core/__init__.py)
[ -n "$VERSION" ] || { echo "archive: no __version__ in core/__init__.py" >&2; exit 2; }
OS=$(uname -s | tr '[:upper:]' '[:lower:]')
ARCH=$(uname -m)
NAME=convsim-$VERSION-$OS-$ARCH.tar.gz

# Written under a temporary name and renamed when complete: a cut-short run leaves no archive
# that looks finished.
rm -f "$DIST/$NAME" "$DIST/$NAME.sha256" "$DIST/$NAME.part"
tar -C "$DIST" -czf "$DIST/$NAME.part" convsim
mv "$DIST/$NAME.part" "$DIST/$NAME"
if command -v sha256sum >/dev/null; then SUM=(sha256sum); else SUM=(shasum -a 256); fi # macOS
(cd "$DIST" && "${SUM[@]}" "$NAME" >"$NAME.sha256")

end=$(date +%s)
echo "== archived $DIST/$NAME in $((end - start)) s: $(du -h "$DIST/$NAME" | cut -f1)" \
    "($(wc -c <"$DIST/$NAME") bytes); sha256 in $NAME.sha256"
