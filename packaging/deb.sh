#!/usr/bin/env bash
# Builds the .deb (cargo-deb) from the release binary: `make deb` runs it after
# `cargo build --release -p edgeprobe`. The man pages and shell completions are generated
# here from that binary, under the target directory, never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/release/edgeprobe
[ -x "$bin" ] || { echo "no $bin: run make release first" >&2; exit 1; }
# cargo-deb maps `target/release/...` in [package.metadata.deb] assets to the real target dir.
assets=$target/release/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" man --out-dir "$assets/man"
gzip -9n "$assets"/man/*.1
"$bin" completions bash >"$assets/completions/edgeprobe"
"$bin" completions zsh >"$assets/completions/_edgeprobe"
"$bin" completions fish >"$assets/completions/edgeprobe.fish"
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "installing cargo-deb from crates.io" >&2
  cargo install cargo-deb --locked
fi
mkdir -p "$target/debian"
cargo deb -p edgeprobe --no-build --no-strip --output "$target/debian/"
