#!/usr/bin/env bash
# The .deb as a user gets it: install, run, read the man page, complete, remove. Run by
# `make test-deb` (and `make test`) after `make deb`. Needs root; fails if the package is
# already installed (it would not be ours to remove).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=$target/debian/edgeprobe_${version}-1_$(dpkg --print-architecture).deb
fail() { echo "tests/deb.sh: FAIL: $*" >&2; exit 1; }
[ -f "$deb" ] || fail "no $deb (make deb)"
if dpkg-query -W -f='${db:Status-Status}' edgeprobe 2>/dev/null | grep -qx installed; then
  fail "edgeprobe is already installed on this machine; not touching it"
fi
echo "$deb: $(du -k "$deb" | cut -f1) KiB"
files=(
  /usr/bin/edgeprobe
  /usr/share/man/man1/edgeprobe.1.gz
  /usr/share/man/man1/edgeprobe-bundle.1.gz
  /usr/share/man/man1/edgeprobe-serve.1.gz
  /usr/share/bash-completion/completions/edgeprobe
  /usr/share/zsh/vendor-completions/_edgeprobe
  /usr/share/fish/vendor_completions.d/edgeprobe.fish
  /lib/systemd/system/edgeprobe.service
  /lib/systemd/system/edgeprobe-textfile.service
  /lib/systemd/system/edgeprobe-textfile.timer
)
for f in "${files[@]}"; do [ ! -e "$f" ] || fail "$f exists before the install"; done
trap 'dpkg -r edgeprobe >/dev/null 2>&1 || true' EXIT
dpkg -i "$deb" >/dev/null
for f in "${files[@]}"; do [ -s "$f" ] || fail "$f is not installed"; done
[ "$(/usr/bin/edgeprobe --version)" = "edgeprobe $version" ] || fail "edgeprobe --version: $(/usr/bin/edgeprobe --version)"
# The man pages are real roff pages of this binary.
zcat /usr/share/man/man1/edgeprobe-bundle.1.gz | grep -q -- '-since' || fail "edgeprobe-bundle(1) does not document --since"
zcat /usr/share/man/man1/edgeprobe.1.gz | grep -q '^\.TH' || fail "edgeprobe(1) is not roff"
# The completions are for this binary's subcommands, and bash can load them.
bash -c 'source /usr/share/bash-completion/completions/edgeprobe && complete -p edgeprobe' >/dev/null || fail "bash completion does not load"
grep -q bundle /usr/share/zsh/vendor-completions/_edgeprobe || fail "zsh completion lacks bundle"
grep -q "__fish_edgeprobe" /usr/share/fish/vendor_completions.d/edgeprobe.fish || fail "fish completion is not edgeprobe's"
# The units name the installed binary, and nothing is enabled.
grep -q '^ExecStart=/usr/bin/edgeprobe serve --listen 127.0.0.1:9600' /lib/systemd/system/edgeprobe.service || fail "edgeprobe.service ExecStart"
grep -q 'edgeprobe.prom$' /lib/systemd/system/edgeprobe-textfile.service || fail "textfile service ExecStart"
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify /lib/systemd/system/edgeprobe.service /lib/systemd/system/edgeprobe-textfile.service /lib/systemd/system/edgeprobe-textfile.timer \
    || fail "systemd-analyze verify"
fi
for w in /etc/systemd/system/multi-user.target.wants/edgeprobe.service /etc/systemd/system/timers.target.wants/edgeprobe-textfile.timer; do
  [ ! -e "$w" ] || fail "$w: the package must not enable units"
done
dpkg -r edgeprobe >/dev/null
trap - EXIT
for f in "${files[@]}"; do [ ! -e "$f" ] || fail "$f is left after dpkg -r"; done
status=$(dpkg-query -W -f='${db:Status-Status}' edgeprobe 2>/dev/null || true)
[ "$status" != installed ] || fail "still installed after dpkg -r"
left=$(dpkg -L edgeprobe 2>/dev/null | grep -v '^/\.$' || true)
[ -z "$left" ] || fail "dpkg still lists files: $left"
echo "tests/deb.sh: ok (installed, ran, man pages and completions present, removed clean)"
