#!/usr/bin/env bash
# Build the Python tagger into a WebAssembly component with componentize-py (from PyPI).
# Usage: build.sh [OUTPUT.wasm]   (default: <repo>/target/wasm/python-tagger.wasm)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/target/wasm/python-tagger.wasm}"
version="0.25.1"

# Up to date? Skip.
if [[ -f "$out" && "$out" -nt "$here/app.py" && "$out" -nt "$here/build.sh" && "$out" -nt "$repo/wit/plugin.wit" ]]; then
  exit 0
fi

if ! componentize-py --version 2>/dev/null | grep -q "$version"; then
  python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$version"
fi

mkdir -p "$(dirname "$out")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Bindings are generated into a scratch dir, never into the source tree.
componentize-py -d "$repo/wit" -w basic-plugin bindings "$work/bindings"
componentize-py -d "$repo/wit" -w basic-plugin componentize -p "$here" -p "$work/bindings" app -o "$work/out.wasm"
mv "$work/out.wasm" "$out"
