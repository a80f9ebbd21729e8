//! What to change, per reason: the probes' one table of fixes.

use edgeprobe_core::{Protocol, Reason};

/// What to change, per reason. `None` where the message says it all. The protocol to switch
/// to, when one works, is the verdict's to name (`verdict::align_fix`), not the probe's.
pub fn fix_for(reason: Reason, protocol: Protocol, host: &str, port: u16) -> Option<String> {
    Some(match reason {
        Reason::DnsNxdomain => format!("check the host name {host} (a typo in config.toml, or a deleted hub)"),
        Reason::DnsNoRecords | Reason::DnsError => format!("check the DNS servers in /etc/resolv.conf and whether they can resolve {host}"),
        Reason::DnsTimeout => "check that the DNS servers in /etc/resolv.conf are reachable (UDP and TCP 53)".into(),
        Reason::TcpTimeout | Reason::TcpRefused | Reason::TcpUnreachable => {
            format!("allow outbound TCP {port} to {host} in the firewall")
        }
        Reason::TlsUntrusted => "if a TLS-inspecting proxy is on the path, exempt the Azure endpoints from inspection, or add its root CA to the OS store and to trust_bundle_cert in /etc/aziot/config.toml (X.509 device auth cannot pass inspection)".into(),
        Reason::TlsNameMismatch => format!("something intercepts {host}:{port}, or the host name is wrong; check DNS and transparent proxies"),
        Reason::TlsExpired => "check the device clock (timedatectl; enable NTP); if the clock is right, the server's certificate has expired".into(),
        Reason::TlsNotTls | Reason::WrongService => format!("something other than the service answers on {host}:{port}: check for a transparent proxy, captive portal or port redirect"),
        Reason::TlsTimeout | Reason::ProtocolTimeout => format!("a middlebox inspects or drops {} after the handshake starts, or the path MTU is too small (try `ping -M do -s 1472 {host}`)", protocol.title()),
        Reason::ProxyAuthRequired => "put the proxy credentials in the proxy URL (http://user:password@proxy:port)".into(),
        Reason::ProxyDenied => format!("ask the proxy administrator to allow CONNECT to {host}:{port}"),
        Reason::ProxyUnreachable => "check the proxy address and that it is reachable from this device; for an https:// proxy, that its certificate is valid for its name and its CA is trusted (trust_bundle_cert, or --trust-bundle)".into(),
        Reason::WsRejected | Reason::WsSubprotocol => "a proxy or web filter blocks WebSocket upgrades on /$iothub/websocket: allow them for the Azure endpoints".into(),
        Reason::AuthRejected => "check the device id and key (regenerated key? wrong hub?) and the device clock".into(),
        _ => return None,
    })
}
