//! The host's commands, each killed at its budget with only the last bytes of its output
//! kept: versions, firewall rules, time sync, disk space, and the journals of the IoT Edge
//! services and the engine.

use edgeprobe_docker::Tail;
use tokio::time::Instant;

use super::{entry, Entry, Window, COMMAND_BUDGET};

/// Most output kept from a command that is not a log (iptables rules, df...).
const COMMAND_OUTPUT_LIMIT: usize = 1024 * 1024;
/// The services whose journals support asks for (1.2+, then 1.1's daemon, then the engine).
const JOURNAL_UNITS: [&str; 6] = [
    "aziot-keyd",
    "aziot-certd",
    "aziot-identityd",
    "aziot-edged",
    "iotedge",
    "docker",
];

/// A tail's text, with a first line saying what was dropped, if anything.
fn tail_text(tail: Tail) -> String {
    let max = tail.max();
    let (text, dropped) = tail.finish();
    if dropped == 0 {
        text
    } else {
        format!(
            "[edgeprobe: {dropped} earlier bytes dropped; the last {} KiB are kept]\n{text}",
            max / 1024
        )
    }
}

/// Runs `program args` until it exits or `deadline`, whichever is first (it is killed then),
/// keeping the last `max` bytes of its output. A non-zero exit is an error with its first
/// stderr line, unless `partial_ok` and it printed something (dpkg-query naming packages
/// that are not installed).
pub(super) async fn command_bounded(
    program: &str,
    args: &[String],
    deadline: Instant,
    max: usize,
    partial_ok: bool,
) -> Result<String, String> {
    use tokio::io::AsyncReadExt as _;
    let shown = || {
        format!("{program} {}", args.join(" "))
            .trim_end()
            .to_owned()
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("`{program}` is not installed"),
            _ => format!("cannot run `{program}`: {e}"),
        })?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let work = async {
        let out = async {
            let mut tail = Tail::new(max);
            let mut buf = vec![0u8; 16 * 1024];
            if let Some(r) = stdout.as_mut() {
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tail.push(&buf[..n]);
                }
            }
            tail
        };
        let err = async {
            // All of it is read (a full pipe would stall the command), the first 4 KiB kept.
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 4096];
            if let Some(r) = stderr.as_mut() {
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let room = 4096usize.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&buf[..room]);
                }
            }
            kept
        };
        let (out, err) = tokio::join!(out, err);
        (out, err, child.wait().await)
    };
    match tokio::time::timeout_at(deadline, work).await {
        Err(_) => Err(format!("`{}` did not finish in time", shown())),
        Ok((_, _, Err(e))) => Err(format!("`{}`: {e}", shown())),
        Ok((out, _, Ok(status))) if status.success() || (partial_ok && !out.is_empty()) => {
            Ok(tail_text(out))
        }
        Ok((_, err, Ok(status))) => {
            let err = String::from_utf8_lossy(&err);
            let first = err
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            Err(format!(
                "`{}` failed ({status}){}{first}",
                shown(),
                if first.is_empty() { "" } else { ": " }
            ))
        }
    }
}

pub(super) async fn command(
    program: &str,
    args: &[&str],
    deadline: Instant,
) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    command_bounded(program, &args, deadline, COMMAND_OUTPUT_LIMIT, false).await
}

/// The host's commands, all at once, each within its own budget: versions, firewall
/// rules (read only), time sync, disk space, and the journals of the IoT Edge services
/// and the engine.
pub(super) async fn collect_commands(window: Window, deadline: Instant) -> Vec<Entry> {
    struct Source {
        path: String,
        program: &'static str,
        args: Vec<String>,
        max: usize,
        partial_ok: bool,
        journal: Option<&'static str>,
    }
    let plain = |path: &str, program: &'static str, args: &[&str]| Source {
        path: path.to_owned(),
        program,
        args: args.iter().map(|a| a.to_string()).collect(),
        max: COMMAND_OUTPUT_LIMIT,
        partial_ok: false,
        journal: None,
    };
    let mut sources = vec![
        // The CLI of 1.1 and 1.2+ alike; the daemons' versions are their packages'.
        plain("versions/iotedge.txt", "iotedge", &["--version"]),
        Source {
            partial_ok: true,
            ..plain(
                "versions/packages.tsv",
                "dpkg-query",
                &[
                    "--show",
                    "--showformat=${Package}\t${Version}\t${db:Status-Status}\n",
                    "aziot-edge",
                    "aziot-identity-service",
                    "iotedge",
                    "libiothsm-std",
                    "moby-engine",
                    "moby-cli",
                    "docker-ce",
                    "docker.io",
                    "containerd*",
                ],
            )
        },
        plain("host/uname.txt", "uname", &["-a"]),
        plain("host/df.txt", "df", &["-P", "-h"]),
        plain("host/iptables-save.txt", "iptables-save", &[]),
        plain("host/ip6tables-save.txt", "ip6tables-save", &[]),
        plain("host/nft-ruleset.txt", "nft", &["list", "ruleset"]),
        plain("host/timesync.txt", "timedatectl", &["show-timesync"]),
        plain("host/chrony-tracking.txt", "chronyc", &["tracking"]),
        plain("host/ntpq.txt", "ntpq", &["-pn"]),
    ];
    for unit in JOURNAL_UNITS {
        let mut args = vec![
            "--unit".to_owned(),
            format!("{unit}.service"),
            "--since".into(),
            format!("@{}", window.since),
            "--no-pager".into(),
            "--quiet".into(),
            "--output".into(),
            "short-iso-precise".into(),
            // The newest lines first bound the work; the byte limit bounds the file.
            "--lines".into(),
            "20000".into(),
        ];
        if let Some(u) = window.until {
            args.extend(["--until".into(), format!("@{u}")]);
        }
        sources.push(Source {
            path: format!("journals/{unit}.log"),
            program: "journalctl",
            args,
            max: window.limit,
            partial_ok: false,
            journal: Some(unit),
        });
    }
    let runs = sources.into_iter().map(|src| async move {
        let budget = deadline.min(Instant::now() + COMMAND_BUDGET);
        let mut content =
            command_bounded(src.program, &src.args, budget, src.max, src.partial_ok).await;
        let how = match src.journal {
            Some(unit) => format!(
                "journalctl --unit {unit}.service, {}",
                window.describe()
            ),
            None => format!("{} {}", src.program, src.args.join(" ")).trim_end().to_owned(),
        };
        if let (Some(unit), Ok(text)) = (src.journal, &content) {
            if text.trim().is_empty() {
                content = Err(format!(
                    "no journal entries for {unit}.service in the window (the service is not installed here, or logged nothing)"
                ));
            }
        }
        entry(src.path, how, content)
    });
    futures_util::future::join_all(runs).await
}
