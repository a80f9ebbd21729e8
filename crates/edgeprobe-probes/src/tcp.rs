//! Connecting as a careful client does: every resolved address is tried, IPv6 and IPv4
//! raced with a short stagger (Happy Eyeballs, RFC 8305) so a broken family costs 250 ms
//! instead of the whole budget, all inside the run's deadline. Every attempt is recorded.

use std::net::SocketAddr;
use std::time::Duration;

use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{PhaseName, PhaseStatus, Reason};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Failure;

/// Delay before the next address is tried while earlier attempts are still pending.
pub const STAGGER: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Refused,
    Unreachable,
    Timeout,
    Other,
}

/// Orders addresses alternating families, starting with the first one's family.
fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let (first, second): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs
        .iter()
        .copied()
        .partition(|a| a.is_ipv6() == addrs.first().is_some_and(|f| f.is_ipv6()));
    let mut out = Vec::with_capacity(addrs.len());
    let (mut a, mut b) = (first.into_iter(), second.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    out
}

/// Connects to the first address that accepts, recording the `tcp` phase.
pub async fn connect(
    addrs: &[SocketAddr],
    rec: &PhaseRecorder,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), Failure> {
    rec.start(PhaseName::Tcp);
    if addrs.is_empty() {
        rec.end(PhaseStatus::Fail, Vec::new());
        return Err((Reason::DnsNoRecords, "no address to connect to".into()));
    }
    let order = interleave(addrs);
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut next = 0usize;
    let mut attempts: Vec<serde_json::Value> = Vec::new();
    let mut failures: Vec<(SocketAddr, Attempt)> = Vec::new();

    loop {
        if next < order.len()
            && (pending.is_empty() || Instant::now() >= started + STAGGER * next as u32)
        {
            let addr = order[next];
            next += 1;
            pending.push(async move {
                let t0 = Instant::now();
                let r = tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await;
                (addr, t0.elapsed(), r)
            });
        }
        let stagger_at = if next < order.len() {
            (started + STAGGER * next as u32).min(deadline)
        } else {
            deadline + Duration::from_secs(3600)
        };
        tokio::select! {
            Some((addr, took, r)) = pending.next() => {
                let ms = took.as_secs_f64() * 1000.0;
                match r {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        attempts.push(json!({"address": addr.to_string(), "result": "connected", "ms": ms}));
                        let mut detail = vec![("address".into(), json!(addr.to_string())), ("attempts".into(), json!(attempts))];
                        // IPv4 won although IPv6 was tried first: IPv6 resolves but does not
                        // work (common when a Docker network enables IPv6 without a route).
                        let v6_tried = order[..next].iter().any(|a| a.is_ipv6());
                        let status = if addr.is_ipv4() && v6_tried {
                            detail.push(("ipv6".into(), json!("IPv6 addresses were tried first and did not connect; IPv4 did")));
                            PhaseStatus::Warn
                        } else {
                            PhaseStatus::Ok
                        };
                        rec.end(status, detail);
                        return Ok((stream, addr));
                    }
                    Ok(Err(e)) => {
                        let kind = classify(&e);
                        attempts.push(json!({"address": addr.to_string(), "result": e.to_string(), "ms": ms}));
                        failures.push((addr, kind));
                    }
                    Err(_) => {
                        attempts.push(json!({"address": addr.to_string(), "result": "timeout", "ms": ms}));
                        failures.push((addr, Attempt::Timeout));
                    }
                }
                if pending.is_empty() && next >= order.len() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(stagger_at), if next < order.len() => {}
            _ = tokio::time::sleep_until(deadline) => {
                for a in &order[..next] {
                    if !failures.iter().any(|(f, _)| f == a) {
                        failures.push((*a, Attempt::Timeout));
                        attempts.push(json!({"address": a.to_string(), "result": "timeout"}));
                    }
                }
                break;
            }
        }
    }
    rec.end(
        PhaseStatus::Fail,
        vec![("attempts".into(), json!(attempts))],
    );
    let port = addrs.first().map(|a| a.port()).unwrap_or(0);
    let shown: Vec<String> = order.iter().map(|a| a.ip().to_string()).collect();
    let shown = shown.join(", ");
    let any = |k: Attempt| failures.iter().any(|(_, a)| *a == k);
    Err(if failures.is_empty() || any(Attempt::Timeout) {
        (
            Reason::TcpTimeout,
            format!(
                "no answer from {shown} on port {port} within {:.1} s: a firewall is dropping port {port}",
                started.elapsed().as_secs_f64()
            ),
        )
    } else if failures.iter().all(|(_, a)| *a == Attempt::Refused) {
        (
            Reason::TcpRefused,
            format!("{shown} refused the connection on port {port}: nothing listens there, or a firewall rejects it"),
        )
    } else if any(Attempt::Unreachable) {
        (
            Reason::TcpUnreachable,
            format!("{shown} is unreachable on port {port}: no route (check the default route, or a firewall rejecting with ICMP)"),
        )
    } else {
        (
            Reason::TcpRefused,
            format!("could not connect to {shown} on port {port}"),
        )
    })
}

fn classify(e: &std::io::Error) -> Attempt {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | ConnectionReset => Attempt::Refused,
        HostUnreachable | NetworkUnreachable | AddrNotAvailable => Attempt::Unreachable,
        TimedOut => Attempt::Timeout,
        _ => match e.raw_os_error() {
            Some(113) | Some(101) | Some(1) => Attempt::Unreachable, // EHOSTUNREACH, ENETUNREACH, EPERM (local firewall)
            _ => Attempt::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_alternate() {
        let a: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "127.0.0.1:1", "127.0.0.2:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let got: Vec<String> = interleave(&a).iter().map(|s| s.to_string()).collect();
        assert_eq!(got, ["[::1]:1", "127.0.0.1:1", "[::2]:1", "127.0.0.2:1"]);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        // Bound but not listening: refused, and no other test can be handed the number.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let rec = PhaseRecorder::new();
        let err = connect(&[addr], &rec, Instant::now() + Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.0, Reason::TcpRefused);
        assert_eq!(rec.finish()[0].status, PhaseStatus::Fail);
    }
}
