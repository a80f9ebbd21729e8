//! The host firewall as `iptables -S` prints it: one reader and one rule matcher, for the
//! gateway view (the INPUT chain: is an inbound port blocked?) and the container vantage
//! (DOCKER-USER and FORWARD: which rule blocks the Docker network?). Reading needs root;
//! without it a chain reads as empty, which only costs the evidence, never a verdict.

use tokio::time::Instant;

/// The rules of `chain`, one `iptables -S` line each; empty when iptables is missing, fails
/// (no root, no such chain) or does not answer by `deadline`.
pub async fn chain_rules(chain: &str, deadline: Instant) -> Vec<String> {
    let cmd = tokio::process::Command::new("iptables")
        .args(["-S", chain])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout_at(deadline, cmd).await {
        Ok(Ok(o)) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a rule's verdict drops or rejects what it matches.
pub fn drops_or_rejects(rule: &str) -> bool {
    rule.contains("DROP") || rule.contains("REJECT")
}

/// Whether a rule names destination port `port`: `--dport N`, or `--dports` with `port` in
/// its list or one of its `A:B` ranges.
pub fn matches_port(rule: &str, port: u16) -> bool {
    let words: Vec<&str> = rule.split_whitespace().collect();
    words.windows(2).any(|w| match w[0] {
        "--dport" => w[1] == port.to_string(),
        "--dports" => w[1].split(',').any(|p| match p.split_once(':') {
            Some((a, b)) => matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= port && port <= b),
            None => p == port.to_string(),
        }),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_match_single_lists_and_ranges_but_not_prefixes() {
        let rule = "-A DOCKER-USER -s 172.18.0.0/16 -p tcp -m tcp --dport 8883 -j DROP";
        assert!(matches_port(rule, 8883));
        assert!(!matches_port(rule, 883));
        assert!(!matches_port(
            "-A FORWARD -p tcp -m tcp --dport 88830 -j DROP",
            8883
        ));
        let multi = "-A INPUT -p tcp -m multiport --dports 443,5600:5700 -j REJECT";
        assert!(matches_port(multi, 443) && matches_port(multi, 5671));
        assert!(!matches_port(multi, 8883));
        assert!(drops_or_rejects(multi) && !drops_or_rejects("-A INPUT -j ACCEPT"));
    }
}
