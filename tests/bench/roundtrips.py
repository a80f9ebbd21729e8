#!/usr/bin/env python3
"""Round trips per probe, counted from its own phases in an edgeprobe JSON report.

Usage: roundtrips.py REPORT.json RTT_MS [ID_PREFIX...]

For every check (of the given id prefixes, default all) prints one markdown table row: the
check's wall time, each phase's duration and round trips (duration / RTT, rounded), the sum,
the protocol's minimum (below), and wall time / (minimum x RTT). What a check spends after
its last phase (closing) shows as `tail`. Run by tests/bench.sh (`make bench`).
"""
import json
import sys

# The fewest round trips each probe needs, as issue 19 counts them (name resolution costs
# none: the bench passes --resolve):
#   MQTT      TCP 1 + TLS 1.3 1 + CONNECT/CONNACK 1
#   HTTPS     TCP 1 + TLS 1 + request 1
#   MQTT-WS   TCP 1 + TLS 1 + upgrade 1 + CONNECT 1
#   AMQP      TCP 1 + TLS 1 + SASL 1 (header and init pipelined; mechanisms and outcome come
#             back together) + open/begin/attach pipelined 1 + put-token 1 + telemetry
#             attach 1; DPS (SASL PLAIN, no CBS, no link) stops after open/begin: 4. (Issue 19
#             counted SASL as 1-2: with init pipelined, as the probe does, it is 1.)
#   AMQP-WS   AMQP + upgrade 1
#   registry  TCP 1 + TLS 1 + /v2/ 1 + token 1 + manifest list 1 + manifest 1 + blob HEAD 1,
#             on one kept-alive connection (a token service on another host: + TCP + TLS)
MINIMUM = {
    "mqtt": 3,
    "https": 3,
    "mqtt-ws": 4,
    "amqp": 6,
    "amqp-ws": 7,
    "registry": 7,
}
DPS_AMQP = {"amqp": 4, "amqp-ws": 5}


def minimum(check):
    proto = check["protocol"]
    if check["endpoint"] == "dps" and proto in DPS_AMQP:
        return DPS_AMQP[proto]
    return MINIMUM.get(proto)


def rows(report, rtt, prefixes):
    out = []
    for c in report["checks"]:
        if prefixes and not any(c["id"].startswith(p) for p in prefixes):
            continue
        if c["status"] == "skip" or not c["phases"]:
            continue  # not run, or a local fact (no network)
        counted = 0
        parts = []
        for p in c["phases"]:
            n = round(p["duration_ms"] / rtt)
            counted += n
            parts.append(f'{p["name"]} {p["duration_ms"]:.0f} ({n})')
        end = max((p["started_ms"] + p["duration_ms"] for p in c["phases"]), default=0.0)
        tail = c["duration_ms"] - end
        if tail >= rtt / 2:
            parts.append(f"tail {tail:.0f} ({round(tail / rtt)})")
            counted += round(tail / rtt)
        low = minimum(c)
        ratio = f'{c["duration_ms"] / (low * rtt):.2f}' if low else "-"
        status = "" if c["status"] == "pass" else f' **{c["status"]}: {c["reason"]}**'
        out.append(
            f'| {c["id"]}{status} | {c["duration_ms"]:.0f} ms | {", ".join(parts)} | '
            f'{counted} | {low if low else "-"} | {ratio} |'
        )
    return out


def main():
    report = json.load(open(sys.argv[1]))
    rtt = float(sys.argv[2])
    prefixes = sys.argv[3:]
    print("| check | wall | phases, ms (round trips) | counted | minimum | wall / minimum |")
    print("|---|---|---|---|---|---|")
    for row in rows(report, rtt, prefixes):
        print(row)


if __name__ == "__main__":
    main()
