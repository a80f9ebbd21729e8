//! End-to-end tests: the real `edgeprobe` binary against real listeners — the simulated hub
//! of the `fixtures` crate on loopback, and network namespaces for firewall scenarios.

/// Bad flags and files: exit 2 with one line naming the culprit.
mod bad_input;
/// Support bundles and atomic report files.
mod bundle;
/// Bundles with the IoT Edge modules' logs and inspect, journals, and no secret, on the real engine.
mod bundle_modules;
/// Catalog v2: tcp and tls probes, expectations, limits, trust roots.
mod catalog;
/// The device's own IoT Edge configuration as input.
mod config;
/// The deadline holds whatever the network does.
mod deadline;
/// The container vantage on a real Docker network.
mod docker;
/// DPS devices: DPS checks and the hub DPS assigned.
mod dps;
/// Every fault mode of the simulated hub, and the verdict it leads to.
mod faults;
/// The network lab: Debian's dnsmasq, mosquitto, nginx, squid, RabbitMQ and docker-registry behind a router namespace.
mod lab;
/// `edgeprobe serve`: metrics, history, the floor, SIGTERM, and a real Prometheus scraping it.
mod module;
/// JSON schema, golden text, and `list`/`demo`.
mod output;
/// The pre-flight contract: one verdict in the exit code and every format; `-o FORMAT`.
mod preflight;
/// Real squid and tinyproxy between edgeprobe and the hub; stunnel in front of squid (`https://`).
mod proxy;
/// Container registry checks against Debian's docker-registry, blobs on a data host; through squid.
mod registry;
/// No secret reaches any output.
mod secrets;
/// Shared plumbing.
mod support;
/// Third-party servers from Debian's packages, started and killed per test.
mod thirdparty;
/// Downstream devices behind a gateway, nested devices under a parent.
mod topology;
/// A module's own identity through a stand-in IoT Edge workload API.
mod workload;
