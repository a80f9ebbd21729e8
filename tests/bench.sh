#!/usr/bin/env bash
# Benchmarks for BENCHMARKS.md (run by `make bench`; needs root). Everything stays on this
# machine: the simulated hub (`edgeprobe serve-fixture`) listens in a "cloud" network
# namespace, edgeprobe and the standard tools run in a "device" namespace, and a "router"
# namespace between them delays every forwarded packet by 25 ms each way (a 50 ms RTT) with
# tests/bench/nfq-delay on NFQUEUE, since this kernel has no sch_netem.
#
#   EDGEPROBE=path   the binary to measure (default target/release/edgeprobe)
#   RUNS=n           repetitions per timing, the median is reported (default 5)
#   OUT=file         also write the results as markdown there (default target/bench-latest.md)
set -euo pipefail
cd "$(dirname "$0")/.."
EP=$(realpath "${EDGEPROBE:-target/release/edgeprobe}")
RUNS=${RUNS:-5}
OUT=${OUT:-target/bench-latest.md}
DELAY_MS=25
HUB=testhub.azure-devices.net
DEV=dev-1
KEY=c2VjcmV0LWtleS1mb3ItZWRnZXByb2JlLXRlc3RzLTE=
CLOUD=10.30.2.2
# The full check's other services, in the same cloud namespace: DPS (a second simulated hub
# on the real ports), and a token-auth registry (tests/bench/registry_lab.py): the registry,
# its token service and its data endpoint, each on 443 of an address of its own.
DPS=global.azure-devices-provisioning.net
SCOPE=0ne00000b3c
DPS_IP=10.30.2.3 REG_IP=10.30.2.4 AUTH_IP=10.30.2.5 DATA_IP=10.30.2.6
REGISTRY=registry.lab

[ "$(id -u)" = 0 ] || { echo "bench.sh needs root (network namespaces, iptables)"; exit 2; }
[ -x "$EP" ] || { echo "no edgeprobe binary at $EP (make release)"; exit 2; }

need=()
for cmd_pkg in "mosquitto_pub:mosquitto-clients" "curl:curl" "openssl:openssl" "iptables:iptables" "/usr/bin/time:time" "python3:python3" "docker-registry:docker-registry"; do
  cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -c 'import cryptography' 2>/dev/null || need+=(python3-cryptography)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

echo "building tests/bench/nfq-delay ..." >&2
cargo build -q --release --manifest-path tests/bench/nfq-delay/Cargo.toml \
  --target-dir "${BENCH_TARGET_DIR:-target/bench}"
DELAYER=$(realpath "${BENCH_TARGET_DIR:-target/bench}")/release/nfq-delay

# --- the lab: device -- router (delay) -- cloud ------------------------------------------
tag=$$
D=epb-dev-$tag R=epb-rtr-$tag C=epb-cld-$tag
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "$D" "$R" "$C"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "/etc/netns/$D" "$WORK"
  if [ -n "${DNET:-}" ]; then docker network rm "$DNET" >/dev/null 2>&1; fi
}
trap cleanup EXIT INT TERM

for n in "$D" "$R" "$C"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n "$R" link add r-dev type veth peer name eth0 netns "$D"
ip -n "$R" link add r-cloud type veth peer name eth0 netns "$C"
ip -n "$R" addr add 10.30.1.1/24 dev r-dev
ip -n "$R" addr add 10.30.2.1/24 dev r-cloud
ip -n "$R" link set r-dev up; ip -n "$R" link set r-cloud up
ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1
ip -n "$D" addr add 10.30.1.2/24 dev eth0; ip -n "$D" link set eth0 up
ip -n "$D" route add default via 10.30.1.1
ip -n "$C" addr add $CLOUD/24 dev eth0; ip -n "$C" link set eth0 up
for a in $DPS_IP $REG_IP $AUTH_IP $DATA_IP; do ip -n "$C" addr add $a/24 dev eth0; done
ip -n "$C" route add default via 10.30.2.1
# Every tool in the device namespace finds the hub by name (ip netns exec bind-mounts it).
mkdir -p "/etc/netns/$D"
echo "$CLOUD $HUB" >"/etc/netns/$D/hosts"
printf 'nameserver 127.0.0.1\n' >"/etc/netns/$D/resolv.conf"

# The simulated hub on the real ports, serving until its stdin closes.
mkfifo "$WORK/hub.in"
ip netns exec "$C" "$EP" serve-fixture --bind $CLOUD --real-ports --device "$DEV:$KEY" \
  <"$WORK/hub.in" >"$WORK/hub.json" 2>"$WORK/hub.err" &
PIDS+=($!)
exec 9>"$WORK/hub.in"
for _ in $(seq 100); do [ -s "$WORK/hub.json" ] && break; sleep 0.05; done
python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["ca_pem"])' \
  "$WORK/hub.json" >"$WORK/ca.pem"
# DPS, assigning the device to the hub above.
mkfifo "$WORK/dps.in"
ip netns exec "$C" "$EP" serve-fixture --hostname $DPS --bind $DPS_IP --real-ports \
  --device "$DEV:$KEY" --dps-id-scope $SCOPE --dps-assigned-hub $HUB \
  <"$WORK/dps.in" >"$WORK/dps.json" 2>"$WORK/dps.err" &
PIDS+=($!)
exec 7>"$WORK/dps.in"
# The registry lab: pushes its image, then prints "ready".
mkdir "$WORK/lab" && mkfifo "$WORK/lab.in"
ip netns exec "$C" python3 tests/bench/registry_lab.py "$WORK/lab" $REG_IP $AUTH_IP $DATA_IP \
  <"$WORK/lab.in" >"$WORK/lab.out" 2>"$WORK/lab.err" &
PIDS+=($!)
exec 6>"$WORK/lab.in"
for _ in $(seq 200); do [ -s "$WORK/dps.json" ] && grep -q ready "$WORK/lab.out" && break; sleep 0.05; done
grep -q ready "$WORK/lab.out" || { echo "the registry lab did not start:"; cat "$WORK/lab.err" "$WORK/lab/registry.log"; exit 1; }
python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["ca_pem"])' \
  "$WORK/dps.json" >"$WORK/dps-ca.pem"
cat "$WORK/ca.pem" "$WORK/dps-ca.pem" "$WORK/lab/ca.pem" >"$WORK/bundle.pem"
# The device's IoT Edge configuration: the agent image on the registry, with its account.
cat >"$WORK/config.toml" <<EOF
[agent.config]
image = "$REGISTRY/azureiotedge-agent:1.5"

[agent.config.auth]
serveraddress = "$REGISTRY"
username = "edge"
password = "Registry-Pw-7f3a9c1e"
EOF

delay_on() {
  ip netns exec "$R" iptables -A FORWARD -j NFQUEUE --queue-num 0
  ip netns exec "$R" "$DELAYER" 0 $DELAY_MS 2>/dev/null &
  DELAY_PID=$!
  PIDS+=($DELAY_PID)
  sleep 0.2
}
delay_off() {
  ip netns exec "$R" iptables -D FORWARD -j NFQUEUE --queue-num 0
  kill "$DELAY_PID"; wait "$DELAY_PID" 2>/dev/null || true
}
blackhole_on() { ip netns exec "$R" iptables -I FORWARD -j DROP; }
blackhole_off() { ip netns exec "$R" iptables -D FORWARD -j DROP; }

in_dev() { ip netns exec "$D" "$@"; }
now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# --resolve: name resolution costs no round trip, as with the tools' /etc/hosts entry (and a
# device whose resolver does not answer AAAA would otherwise stall the probes: see BENCHMARKS.md).
ep_args=(check --iothub-hostname $HUB --device-id $DEV --sas-key $KEY --trust-bundle "$WORK/ca.pem"
  --resolve "$HUB:$CLOUD" --vantage host --output json)

# The full check of a DPS device: the DPS lookup, then IoT Hub (the hub DPS assigned), and
# the registry of its agent image (token, manifest, blob redirect, then the data endpoint).
full_args=(check --config "$WORK/config.toml" --id-scope $SCOPE --registration-id $DEV
  --dps-endpoint "https://$DPS/" --sas-key $KEY --trust-bundle "$WORK/bundle.pem"
  --resolve "$HUB:$CLOUD" --resolve "$DPS:$DPS_IP" --resolve "$REGISTRY:$REG_IP"
  --resolve "auth.lab:$AUTH_IP" --resolve "data.lab:$DATA_IP"
  --skip registry-mcr-microsoft-com --vantage host --output json)

# Wall time (ms) of one full edgeprobe check; also keeps the last JSON report.
ep_wall() {
  local t0 t1
  t0=$(now_ns)
  in_dev "$EP" "${ep_args[@]}" "$@" >"$WORK/report.json" || true
  t1=$(now_ns)
  echo $(((t1 - t0) / 1000000))
}
full_wall() {
  local t0 t1
  t0=$(now_ns)
  in_dev "$EP" "${full_args[@]}" "$@" >"$WORK/full.json" || true
  t1=$(now_ns)
  echo $(((t1 - t0) / 1000000))
}

# --- the standard tools, one after another ----------------------------------------------
SAS=$(python3 - "$HUB" "$DEV" "$KEY" <<'EOF'
import base64, hashlib, hmac, sys, time, urllib.parse
hub, dev, key = sys.argv[1:]
res = urllib.parse.quote(f"{hub}/devices/{dev}", safe="")
exp = int(time.time()) + 3600
sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{res}\n{exp}".encode(), hashlib.sha256).digest()).decode()
print(f"SharedAccessSignature sr={res}&sig={urllib.parse.quote(sig, safe='')}&se={exp}")
EOF
)
WSKEY='Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='
# Each prints the ms until that tool had its answer. curl cannot end a WebSocket session
# (no WebSocket support in Debian 12's curl), so for the upgrade rows the time is curl's
# time_starttransfer (the 101 arrived) and the rest of its --max-time is not counted.
tool_mqtt() { # mosquitto_pub: TLS + CONNECT with the SAS token (and, unavoidably, one PUBLISH)
  local t0; t0=$(now_ns)
  in_dev timeout "$1" mosquitto_pub -h $HUB -p 8883 --cafile "$WORK/ca.pem" -i $DEV -V mqttv311 \
    -u "$HUB/$DEV/?api-version=2021-04-12" -P "$SAS" -t "devices/$DEV/messages/events/" -m x \
    >/dev/null 2>&1 || true
  echo $((($(now_ns) - t0) / 1000000))
}
tool_amqp() { # openssl s_client: TCP + TLS only (Debian has no AMQP 1.0 command-line client)
  local t0; t0=$(now_ns)
  in_dev timeout "$1" openssl s_client -connect $HUB:5671 -servername $HUB -CAfile "$WORK/ca.pem" \
    -verify_return_error </dev/null >/dev/null 2>&1 || true
  echo $((($(now_ns) - t0) / 1000000))
}
tool_ws() { # curl: TLS + WebSocket upgrade with the given subprotocol
  local s t0; t0=$(now_ns)
  s=$(in_dev curl -s -o /dev/null -w '%{time_starttransfer}' --cacert "$WORK/ca.pem" --http1.1 \
    --connect-timeout "$1" --max-time "$1" -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
    -H 'Sec-WebSocket-Version: 13' -H "$WSKEY" -H "Sec-WebSocket-Protocol: $2" \
    "https://$HUB/\$iothub/websocket" 2>/dev/null || true)
  if [ "${s:-0}" = "0.000000" ] || [ -z "$s" ]; then echo $((($(now_ns) - t0) / 1000000));
  else awk -v s="$s" 'BEGIN {printf "%d\n", s * 1000}'; fi
}
tool_https() { # curl: the unauthenticated IoT Hub request (401 IotHubUnauthorizedAccess)
  local t0; t0=$(now_ns)
  in_dev curl -s -o /dev/null --cacert "$WORK/ca.pem" --connect-timeout "$1" --max-time "$1" \
    "https://$HUB/devices/$DEV/messages/deviceBound?api-version=2021-04-12" || true
  echo $((($(now_ns) - t0) / 1000000))
}
tools_total() { # the five, one after another; prints the total ms
  local to=$1 a b c d e
  a=$(tool_mqtt "$to"); b=$(tool_amqp "$to"); c=$(tool_ws "$to" mqtt); d=$(tool_ws "$to" AMQPWSB10)
  e=$(tool_https "$to")
  echo "$((a + b + c + d + e)) mqtt=$a amqp=$b mqtt-ws=$c amqp-ws=$d https=$e"
}

# --- measurements --------------------------------------------------------------------------
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
CORES=$(nproc)
KERNEL=$(uname -r)
VERSION=$("$EP" --version 2>/dev/null || echo edgeprobe)
{
echo "# edgeprobe benchmark run"
echo
echo "- machine: $CPU, $CORES cores, Linux $KERNEL"
echo "- binary: $VERSION ($EP)"
echo "- endpoint: edgeprobe serve-fixture (simulated hub) in a network namespace, $RUNS runs per figure, median"
echo
} | tee "$OUT"

# (1) 50 ms RTT
delay_on
rtt=$(for _ in $(seq 5); do
  t0=$(now_ns); in_dev bash -c "exec 3<>/dev/tcp/$CLOUD/443" 2>/dev/null; echo $((($(now_ns) - t0) / 100000)); done | median)
walls=$(for _ in $(seq "$RUNS"); do ep_wall --timeout 15; done)
wall=$(echo "$walls" | median)
# Round trips are counted at the emulated RTT (the measured connect also holds bash's start-up).
rtt_ms=$((2 * DELAY_MS))
hub_rt=$(python3 tests/bench/roundtrips.py "$WORK/report.json" "$rtt_ms" iothub-)
fulls=$(for _ in $(seq "$RUNS"); do full_wall --timeout 15; done)
full=$(echo "$fulls" | median)
full_rt=$(python3 tests/bench/roundtrips.py "$WORK/full.json" "$rtt_ms")
# Per-phase durations of the slowest probe in the last report, for the round-trip count.
slow=$(python3 - "$WORK/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
hub = [c for c in r["checks"] if c["id"].startswith("iothub-")]
c = max(hub, key=lambda c: c["duration_ms"])
phases = " ".join(f'{p["name"]}={p["duration_ms"]:.0f}' for p in c["phases"])
bad = [f'{c["id"]}:{c["reason"]}' for c in hub if c["status"] != "pass"]
print(f'{c["id"]} {c["duration_ms"]:.0f} ms ({phases}){" NOT ALL PASSED: " + " ".join(bad) if bad else ""}')
EOF
)
tools=$(for _ in $(seq "$RUNS"); do tools_total 10; done)
tools_med=$(echo "$tools" | awk '{print $1}' | median)
tools_detail=$(echo "$tools" | sort -n | awk -v m="$tools_med" '$1==m {print; exit}')
delay_off
# The slowest probe's minimum (tests/bench/roundtrips.py counts them): AMQP over WebSocket,
# TCP 1 + TLS 1 + upgrade 1 + SASL 1 (init pipelined) + open/begin/attach 1 + put-token 1 +
# telemetry attach 1.
AMQP_RT=7
bound=$((AMQP_RT * 2 * DELAY_MS))
# The full check's longest chain of dependent round trips: the registry (7 on one kept-alive
# connection, + 2 for a token service on a host of its own) then its data endpoint (3);
# beside it the DPS lookup (3) then the hub's AMQP-WS (7).
FULL_RT=12
full_bound=$((FULL_RT * 2 * DELAY_MS))
{
echo "## 1. Full check at a 50 ms round trip"
echo
echo "- measured TCP connect RTT across the router: $(awk -v r="$rtt" 'BEGIN {printf "%.1f", r / 10}') ms"
echo "- full check (5 IoT Hub probes + clock + config verdict, device authenticated), wall time: **$wall ms** (runs: $(echo $walls))"
echo "- slowest probe: $slow"
echo "- lower bound: AMQP over WebSocket, $AMQP_RT round trips = $bound ms -> ratio **$(awk -v w="$wall" -v b="$bound" 'BEGIN {printf "%.2f", w / b}')**"
echo "- the same five endpoints with the standard tools, one after another: **$tools_med ms** ($tools_detail) -> tools / edgeprobe = $(awk -v t="$tools_med" -v w="$wall" 'BEGIN {printf "%.2f", t / w}') (the tools prove less: see BENCHMARKS.md)"
echo
echo "Round trips per IoT Hub probe, counted from its phases (RTT $rtt_ms ms; last run):"
echo
echo "$hub_rt"
echo
echo "### Full check: DPS + IoT Hub + a token-auth registry"
echo
echo "- wall time: **$full ms** (runs: $(echo $fulls)); longest dependent chain $FULL_RT round trips = $full_bound ms -> ratio **$(awk -v w="$full" -v b="$full_bound" 'BEGIN {printf "%.2f", w / b}')**"
echo
echo "$full_rt"
echo
} | tee -a "$OUT"

# (2) everything blackholed
blackhole_on
bh=""
for to in 2 5; do
  w=$(for _ in $(seq 3); do ep_wall --timeout $to; done | median)
  reasons=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(" ".join(sorted({c["reason"] for c in r["checks"] if c["id"].startswith("iothub-")})))' "$WORK/report.json")
  bh+="- --timeout $to: wall **$w ms** (over the deadline by $((w - to * 1000)) ms); IoT Hub reasons: $reasons"$'\n'
done
tb=$(tools_total 5)
blackhole_off
syn=$(cat /proc/sys/net/ipv4/tcp_syn_retries)
{
echo "## 2. Everything blackholed (router drops every packet)"
echo
printf '%s' "$bh"
echo "- the standard tools one after another, each given the same 5 s: **$(echo "$tb" | awk '{print $1}') ms** ($(echo "$tb" | cut -d' ' -f2-))"
echo "- with their defaults instead (no timeout flags), each TCP connect waits out tcp_syn_retries=$syn: ~$(( (2 ** (syn + 1) - 1) )) s per tool, ~$(( 5 * (2 ** (syn + 1) - 1) )) s for the five"
echo
} | tee -a "$OUT"

# (4) size, memory, CPU (no delay)
size=$(stat -c %s "$EP")
rss=$(in_dev /usr/bin/time -f '%M' "$EP" "${ep_args[@]}" --timeout 15 2>&1 >/dev/null | tail -1)
rss_full=$(in_dev /usr/bin/time -f '%M' "$EP" "${full_args[@]}" --timeout 15 2>&1 >/dev/null | tail -1)
cpu_line() { # user+sys ms per run limited to $1: 20 runs under one /usr/bin/time (10 ms ticks)
  local n=20
  in_dev /usr/bin/time -f '%U %S' bash -c 'for _ in $(seq '$n'); do "$@" >/dev/null || true; done' _ \
    "$EP" "${ep_args[@]}" --timeout 15 --only "$1" 2>&1 | tail -1 \
    | awk -v n=$n '{printf "%.1f\n", ($1 + $2) * 1000 / n}'
}
{
echo "## 4. Footprint"
echo
echo "- release binary: $size bytes ($(awk -v s="$size" 'BEGIN {printf "%.1f", s / 1048576}') MiB)"
echo "- peak RSS: IoT Hub check $rss KiB; full check (DPS + hub + registry) $rss_full KiB"
echo "- CPU time (user+sys, whole process incl. start-up) per run limited to one probe:"
for id in iothub-mqtt iothub-amqp iothub-mqtt-ws iothub-amqp-ws iothub-https 'iothub-*'; do
  echo "  - $id: $(cpu_line "$id") ms"
done
echo
} | tee -a "$OUT"
# (5) the container vantage: the probe image is built from this binary, never pulled
if docker info >/dev/null 2>&1; then
  DNET=edgeprobe-bench-$tag
  GW=10.31.$((tag % 250)).1
  docker network create --subnet "${GW%.1}.0/24" --gateway "$GW" "$DNET" >/dev/null
  # A simulated hub on the bridge's gateway address: reachable from the host and the containers.
  mkfifo "$WORK/hub2.in"
  "$EP" serve-fixture --bind "$GW" --device "$DEV:$KEY" <"$WORK/hub2.in" >"$WORK/hub2.json" 2>/dev/null &
  PIDS+=($!)
  exec 8>"$WORK/hub2.in"
  for _ in $(seq 100); do [ -s "$WORK/hub2.json" ] && break; sleep 0.05; done
  mapfile -t hub2 < <(python3 -c 'import json,sys; j=json.loads(open(sys.argv[1]).readline()); open(sys.argv[2],"w").write(j["ca_pem"]); [print(j[k]) for k in ("mqtt","amqp","https")]' "$WORK/hub2.json" "$WORK/ca2.pem")
  c_args=(check --no-config --iothub-hostname $HUB --device-id $DEV --sas-key $KEY --trust-bundle "$WORK/ca2.pem"
    --connect-to "$HUB:8883:${hub2[0]}" --connect-to "$HUB:5671:${hub2[1]}" --connect-to "$HUB:443:${hub2[2]}"
    --network "$DNET" --timeout 15 --output json)
  c_wall() {
    local t0 t1
    t0=$(now_ns); "$EP" "${c_args[@]}" "$@" >"$WORK/c.json" 2>/dev/null || true; t1=$(now_ns)
    echo $(((t1 - t0) / 1000000))
  }
  host_w=$(for _ in $(seq "$RUNS"); do c_wall --vantage host; done | median)
  # Cold: no probe image of this binary yet, so the run imports one.
  docker images -q --filter reference='edgeprobe-probe:*' | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
  cold_w=$(c_wall --vantage both)
  cold_v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vantage"])' "$WORK/c.json")
  img=$(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' --filter reference='edgeprobe-probe:*' | head -1)
  warm_w=$(for _ in $(seq "$RUNS"); do c_wall --vantage both; done | median)
  passed=$(python3 - "$WORK/c.json" <<'EOF2'
import json, sys
r = json.load(open(sys.argv[1]))
c = [x for x in r["checks"] if x["id"].startswith("iothub-")]
ok = sum(x["status"] == "pass" for x in c)
print(f"{ok}/{len(c)} IoT Hub checks passed across both vantages ({r['vantage']})")
EOF2
)
  {
  echo "## 5. The container vantage (no network delay)"
  echo
  echo "- host only (\`--vantage host\`): **$host_w ms**"
  echo "- host + container, first run (imports the probe image $img from this binary): **$cold_w ms** (vantage: $cold_v)"
  echo "- host + container, image present: **$warm_w ms**; $passed"
  echo
  } | tee -a "$OUT"
fi
echo "(written to $OUT)"
