#!/usr/bin/env bash
# Build the browser module and page into wasm/www/ (index.html + pkg/), ready for
#   python -m http.server -d wasm/www
set -euo pipefail
cd "$(dirname "$0")/.."
WASM_BINDGEN_VERSION=0.2.130   # must equal the wasm-bindgen crate pinned in wasm/Cargo.toml

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
rustup target add wasm32-unknown-unknown >/dev/null
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  echo "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION"
fi
cargo build -p containerarchive-wasm --target wasm32-unknown-unknown --release --locked
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
rm -rf wasm/www/pkg
mkdir -p wasm/www/pkg
wasm-bindgen --target web --no-typescript --out-dir wasm/www/pkg --out-name engine \
  "$TARGET_DIR/wasm32-unknown-unknown/release/containerarchive_wasm.wasm"
cp wasm/js/containerarchive_wasm.js wasm/js/worker.js wasm/www/pkg/
echo "built wasm/www: serve it with  python -m http.server -d wasm/www  and open http://127.0.0.1:8000/"
