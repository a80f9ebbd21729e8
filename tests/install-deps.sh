#!/usr/bin/env bash
# Installs what the test suite needs from Debian's packages. Idempotent: skips what is there.
set -euo pipefail
need=()
for cmd_pkg in "ip:iproute2" "iptables:iptables" "squid:squid" "tinyproxy:tinyproxy" "openssl:openssl" "unshare:util-linux" "chromium:chromium" \
    "dnsmasq:dnsmasq-base" "mosquitto:mosquitto" "mosquitto_passwd:mosquitto" "nginx:nginx-light" \
    "rabbitmq-server:rabbitmq-server" "epmd:erlang-base" "docker-registry:docker-registry" "stunnel4:stunnel4" "prometheus:prometheus"; do
  cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg##*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
# The bundle tests import a one-binary image from the static busybox (no library to copy).
dpkg -s busybox-static >/dev/null 2>&1 || need+=("busybox-static")
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Try the package lists we have first; refresh them only if that fails.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
