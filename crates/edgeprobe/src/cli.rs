//! Every command and flag. Flags override the device's IoT Edge configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "edgeprobe",
    version,
    about = "Connectivity diagnostics for Azure IoT Edge: runs the real MQTT, AMQP, WebSocket and HTTPS handshakes and says which UpstreamProtocol will work",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the checks that apply and print the report.
    Check(Box<CheckArgs>),
    /// Run the checks and write a support bundle: the reports, TLS chains, redacted configuration,
    /// network facts, the IoT Edge modules' logs and inspect, service journals, versions,
    /// firewall rules and certificate expiry; secrets scrubbed.
    Bundle(Box<BundleArgs>),
    /// List the check catalog.
    List(ListArgs),
    /// Run `check` against a built-in simulated IoT Hub on loopback, with a path blocked.
    Demo(DemoArgs),
    /// Keep checking (as an IoT Edge module or a service): runs the checks every --interval
    /// and on demand, and serves /metrics, /probe, /report.json, /history.json and /healthz.
    Serve(Box<ModuleArgs>),
    /// Build the module image from this binary (nothing is pulled) and tag it.
    Image(ImageArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of edgeprobe or of one subcommand, or write them all to a directory.
    Man(ManArgs),
    /// Serve the simulated IoT Hub until stdin closes (for tests and the network lab).
    #[command(hide = true)]
    ServeFixture(ServeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ModuleArgs {
    /// The checks to run, as for `check`.
    #[command(flatten)]
    pub check: CheckArgs,
    /// Where to serve (IoT Edge modules expose their metrics on port 9600).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:9600")]
    pub listen: std::net::SocketAddr,
    /// Seconds between runs, jittered by up to ±10% so that a fleet does not probe in step.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = parse_interval)]
    pub interval: f64,
    /// Never run more often than this (seconds): /probe within it answers the last run, so a
    /// scrape storm cannot hammer IoT Hub's connection throttles.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_interval)]
    pub min_interval: f64,
    /// Keep the history here (the module's mounted volume); without it, in memory only.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How many runs the history keeps.
    #[arg(long, value_name = "N", default_value = "288", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub history: u32,
    /// The module's name in metric labels (default: IOTEDGE_MODULEID, else edgeprobe).
    #[arg(long, value_name = "NAME", env = "IOTEDGE_MODULEID")]
    pub module_name: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    /// The name to tag the image with.
    #[arg(long, value_name = "REPO:TAG", default_value = concat!("edgeprobe:", env!("CARGO_PKG_VERSION")))]
    pub tag: String,
    /// The Docker engine to use (default: the DOCKER_HOST or the local socket).
    #[arg(long, value_name = "URI")]
    pub docker_uri: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ManArgs {
    /// The subcommand whose page to print (default: the top-level page).
    #[arg(value_name = "SUBCOMMAND", conflicts_with = "out_dir")]
    pub subcommand: Option<String>,
    /// Write every page (edgeprobe.1, edgeprobe-check.1, ...) to DIR instead.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The TLS name the hub presents.
    #[arg(long, default_value = "testhub.azure-devices.net")]
    pub hostname: String,
    /// The IoT Hub name in usernames and tokens, when the server plays an edge gateway or parent.
    #[arg(long)]
    pub iothub_name: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Listen on 8883, 5671 and 443 instead of ephemeral ports.
    #[arg(long)]
    pub real_ports: bool,
    /// A device the hub knows: ID:BASE64KEY (repeatable).
    #[arg(long)]
    pub device: Vec<String>,
    /// A fault: mqtt|amqp|https=closed|stall-after-accept|stall-after-tls|plain-http|wrong-service|untrusted-cert|wrong-name|expired-cert, mqtt-ws|amqp-ws=refuse-upgrade|wrong-subprotocol, credentials=reject.
    #[arg(long)]
    pub fault: Vec<String>,
    /// Play DPS with this ID scope...
    #[arg(long)]
    pub dps_id_scope: Option<String>,
    /// ...assigning devices to this hub.
    #[arg(long)]
    pub dps_assigned_hub: Option<String>,
    /// What DPS's status lookup reports: assigned|disabled|failed[:CODE[:MESSAGE]]|unassigned|assigning|not-found.
    #[arg(long, default_value = "assigned")]
    pub dps_status: String,
}

/// Where checks run from.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum VantageChoice {
    Host,
    Container,
    /// Both when the Docker engine answers and the network exists, else the host with a note.
    #[default]
    Both,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
    /// JUnit XML, one testcase per check, for CI pipelines.
    Junit,
    /// node_exporter textfile format, for fleet dashboards.
    Prometheus,
    /// One self-contained HTML page with a timing waterfall per check.
    Html,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CheckArgs {
    /// IoT Edge configuration to read (default: /etc/aziot/config.toml, else /etc/iotedge/config.yaml).
    #[arg(long, value_name = "FILE", conflicts_with = "no_config")]
    pub config: Option<PathBuf>,
    /// Ignore the device's IoT Edge configuration even if one exists: use only the flags.
    #[arg(long)]
    pub no_config: bool,
    /// Where system files (systemd units, /etc/docker/daemon.json) are read from; for tests.
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub system_root: PathBuf,
    /// IoT Hub host name, e.g. myhub.azure-devices.net.
    #[arg(long, value_name = "HOST")]
    pub iothub_hostname: Option<String>,
    /// Device id for usernames and tokens.
    #[arg(long, value_name = "ID")]
    pub device_id: Option<String>,
    /// The device's symmetric key (base64). Prefer the EDGEPROBE_SAS_KEY environment variable.
    #[arg(
        long,
        value_name = "KEY",
        env = "EDGEPROBE_SAS_KEY",
        hide_env_values = true
    )]
    pub sas_key: Option<String>,
    /// A device connection string (HostName=...;DeviceId=...;SharedAccessKey=...).
    #[arg(
        long,
        value_name = "CS",
        env = "EDGEPROBE_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
    /// X.509 client certificate (PEM) for device authentication.
    #[arg(long, value_name = "PEM", requires = "x509_key")]
    pub x509_cert: Option<PathBuf>,
    /// Private key (PEM) of the X.509 client certificate.
    #[arg(long, value_name = "PEM", requires = "x509_cert")]
    pub x509_key: Option<PathBuf>,
    /// DPS ID scope: checks the Device Provisioning Service, and finds the device's hub from it.
    #[arg(long, value_name = "SCOPE")]
    pub id_scope: Option<String>,
    /// DPS registration id (default: the device id).
    #[arg(long, value_name = "ID")]
    pub registration_id: Option<String>,
    /// DPS endpoint (default global.azure-devices-provisioning.net).
    #[arg(long, value_name = "HOST")]
    pub dps_endpoint: Option<String>,
    /// The identity service's provisioning state, where a DPS device's assigned hub is kept
    /// (default /var/lib/aziot/identityd/device_info; 1.1: <homedir>/cache/provisioning_backup.json).
    #[arg(long, value_name = "FILE")]
    pub identity_state: Option<PathBuf>,
    /// A DPS enrollment group's key: the device key is derived from it and the registration id.
    #[arg(
        long,
        value_name = "KEY",
        env = "EDGEPROBE_DPS_GROUP_KEY",
        hide_env_values = true,
        conflicts_with = "sas_key"
    )]
    pub dps_group_key: Option<String>,
    /// Parent device of a nested edge device: upstream checks target it instead of IoT Hub
    /// (default: the configuration's parent_hostname, when the configured device is checked).
    #[arg(long, value_name = "HOST")]
    pub parent_hostname: Option<String>,
    /// Check what a downstream device can use through this edge gateway (its edgeHub).
    #[arg(long, value_name = "HOST")]
    pub gateway_hostname: Option<String>,
    /// A container registry to check besides mcr.microsoft.com and the configured agent image's (repeatable).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Vec<String>,
    /// Extra trusted roots (PEM), e.g. the IoT Edge trust_bundle_cert or a proxy's CA.
    #[arg(long, value_name = "PEM")]
    pub trust_bundle: Option<PathBuf>,
    /// Roots that verify servers, besides the trust bundle: os (default on the host, as
    /// aziot and Docker verify), mozilla (default in the azure-iot-edge network and as a
    /// module, as the module images carry), bundle-only.
    #[arg(long, value_name = "SET", value_parser = clap::builder::PossibleValuesParser::new(
        edgeprobe_probes::tls::RootSet::ALL.map(edgeprobe_probes::tls::RootSet::as_str),
    ))]
    pub roots: Option<String>,
    /// HTTP proxy URL for the WebSocket protocols and HTTPS (else HTTPS_PROXY / https_proxy).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Deadline for the whole run, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "15", value_parser = parse_timeout)]
    pub timeout: f64,
    /// Use ADDR for HOST instead of DNS (like curl's --resolve). Repeatable.
    #[arg(long, value_name = "HOST:ADDR")]
    pub resolve: Vec<String>,
    /// Connect to ADDR:PORT2 whenever HOST:PORT is probed (like curl's --connect-to). Repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR:PORT2")]
    pub connect_to: Vec<String>,
    /// Run only these checks (ids, or prefixes ending in '*'; comma-separated or repeated).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip these checks (ids, or prefixes ending in '*').
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Add the *.toml check definitions of this directory to the catalog.
    #[arg(long, value_name = "DIR")]
    pub checks_dir: Option<PathBuf>,
    /// A variable your checks' templates use: `{NAME}` becomes VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Prove every path without presenting credentials (the service's refusal is the proof).
    #[arg(long)]
    pub no_auth: bool,
    /// Where to run the checks from: the host, a container on the IoT Edge Docker network, or both.
    #[arg(long, value_enum, default_value = "both")]
    pub vantage: VantageChoice,
    /// The edgeHub container whose published ports make this device a gateway.
    #[arg(long, value_name = "NAME", default_value = "edgeHub", hide = true)]
    pub edgehub_container: String,
    /// The Docker network the modules use (default: moby_runtime.network, else azure-iot-edge).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Report format (`-o json`, as in `iotedge check`).
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub output: Output,
    /// Write the report (for `bundle`: the bundle) to FILE, atomically; `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<String>,
    /// Print the checks that would run, with their resolved hosts and ports, and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Show every phase with its duration and details.
    #[arg(long, short)]
    pub verbose: bool,
    /// Print no report and no progress: the exit code says it all (errors still go to stderr).
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Exit 1 on warnings too.
    #[arg(long)]
    pub warnings_as_errors: bool,
    /// Most probes in flight at once.
    #[arg(long, value_name = "N", default_value = "32", hide = true)]
    pub concurrency: usize,
    /// An absolute deadline (Unix time in ms) that wins over --timeout when sooner: the
    /// container vantage ends with its host run however long the container took to start.
    #[arg(long, value_name = "MS", hide = true)]
    pub until_unix_ms: Option<u64>,
    /// The UpstreamProtocol the device is configured with (normally read from its configuration).
    #[arg(long, value_name = "PROTOCOL", value_parser = ["Amqp", "Mqtt", "AmqpWs", "MqttWs"])]
    pub upstream_protocol: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BundleArgs {
    /// The check to run; `--output-file FILE` says where the bundle (.tar.gz) goes (`-` for
    /// stdout; default `edgeprobe-bundle-<host>-<UTC time>.tar.gz` here). An existing file is
    /// never overwritten.
    #[command(flatten)]
    pub check: CheckArgs,
    /// Module logs and service journals from this time on: a duration back from now
    /// (`24h`, `90m`, `2d`, `30s`), a Unix time in seconds, or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "24h", value_parser = parse_when)]
    pub since: i64,
    /// ...up to this time (same forms; default: now).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub until: Option<i64>,
    /// Keep the last KIB kibibytes of each module's log and of each journal.
    #[arg(long, value_name = "KIB", default_value = "512", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub log_limit: u32,
    /// Only containers whose name starts with PREFIX are modules (edgeAgent and edgeHub are
    /// then PREFIXedgeAgent and PREFIXedgeHub); for tests beside a real runtime.
    #[arg(long, value_name = "PREFIX", default_value = "", hide = true)]
    pub module_prefix: String,
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Add the *.toml check definitions of this directory to the catalog.
    #[arg(long, value_name = "DIR")]
    pub checks_dir: Option<PathBuf>,
    /// A variable your checks' templates use: `{NAME}` becomes VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Report format.
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub output: Output,
    /// Show every phase with its duration and details.
    #[arg(long, short)]
    pub verbose: bool,
    /// Deadline for the run, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_timeout)]
    pub timeout: f64,
}

/// A number of seconds (`30` or `30s`) from 0.1 to `max`.
fn seconds(s: &str, max: f64) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=max).contains(&v) {
        return Err(format!("{v} is out of range (0.1 to {max} seconds)"));
    }
    Ok(v)
}

fn parse_interval(s: &str) -> Result<f64, String> {
    seconds(s, 86_400.0)
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    seconds(s, 3600.0)
}

/// `24h`, `90m`, `2d`, `30s` back from now, a Unix time in seconds, or RFC 3339: Unix seconds.
pub fn parse_when(s: &str) -> Result<i64, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    parse_when_at(s, now)
}

fn parse_when_at(s: &str, now: i64) -> Result<i64, String> {
    let t = s.trim();
    let bad = || {
        format!("{s:?} is not a time: use a duration back from now (24h, 90m, 2d, 30s), Unix seconds, or RFC 3339 (2026-11-30T08:00:00Z)")
    };
    if let Some(unit) = t.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = t[..t.len() - 1].parse::<u32>() {
            let secs = i64::from(n)
                * match unit {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    _ => 86_400,
                };
            return Ok((now - secs).max(0));
        }
    }
    if let Ok(unix) = t.parse::<i64>() {
        return if unix >= 0 { Ok(unix) } else { Err(bad()) };
    }
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|d| d.unix_timestamp())
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_for_since_and_until() {
        let now = 1_800_000_000;
        for (input, want) in [
            ("24h", Ok(now - 86_400)),
            ("90m", Ok(now - 5_400)),
            ("2d", Ok(now - 172_800)),
            ("30s", Ok(now - 30)),
            ("1700000000", Ok(1_700_000_000)),
            ("2026-11-30T08:00:00Z", Ok(1_796_025_600)),
            ("yesterday", Err(())),
            ("-5", Err(())),
            ("h", Err(())),
        ] {
            assert_eq!(parse_when_at(input, now).map_err(|_| ()), want, "{input}");
        }
    }
}
