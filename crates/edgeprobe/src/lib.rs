//! The `edgeprobe` command as a library: [`main`] parses flags, builds the run from them
//! (`request/`), runs it (`stages.rs`) and renders the report (`run.rs`); the binary only
//! calls it. It owns exit codes (PRODUCT.md): 0 the device can run, 1 it cannot, 2 usage
//! or configuration error, 3 internal error.

/// `edgeprobe bundle`: the report and the facts a support engineer asks for, secrets redacted.
mod bundle;
/// One registry of the check ids produced outside the catalog, and their invariant test.
mod check_ids;
/// Clap definitions of every command and flag.
mod cli;
/// `edgeprobe demo`: the simulated hub and a check against it.
mod demo;
/// The host firewall as `iptables -S` prints it: one reader, one rule matcher.
mod firewall;
/// The gateway view: edgeHub's inbound ports on this device.
mod gateway_view;
/// `edgeprobe serve`: the long-running module mode, its HTTP endpoints and its history.
mod module;
/// A progress indicator on a terminal.
mod progress;
/// Container registry checks (`registry-*`) and their data endpoints (`registry-data-*`).
mod registries;
/// `edgeprobe check` and `edgeprobe list`.
mod request;
/// Flags to report: the subcommands' entry points, the check ids outside the catalog.
mod run;
/// Writing user-named files: exclusive temporary file, rename, no special files replaced.
mod safe_write;
/// `edgeprobe serve-fixture`: the simulated hub as a process, for tests and the lab.
mod serve;
/// The run's stages, from a plan to a report.
mod stages;
/// The container vantage: the same checks from the IoT Edge Docker network.
mod vantage;
/// A module's own identity through the IoT Edge workload API.
mod workload;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

/// What went wrong with the tool itself (a failing target is a report, not an error).
#[derive(Debug)]
pub enum AppError {
    /// Bad flags, files or configuration: exit 2, one line naming the culprit.
    Usage(String),
    /// A bug or an environment we cannot work in: exit 3.
    Internal(String),
    /// Ctrl-C: containers removed, exit 130.
    Interrupted,
}

impl AppError {
    fn code(&self) -> u8 {
        match self {
            AppError::Usage(_) => 2,
            AppError::Internal(_) => 3,
            AppError::Interrupted => 130,
        }
    }
}

/// The one line an error prints (after `edgeprobe: error: `).
pub fn error_line(e: &AppError) -> &str {
    match e {
        AppError::Usage(m) | AppError::Internal(m) => m.as_str(),
        AppError::Interrupted => "interrupted",
    }
}

/// The whole command: flags from the process's arguments, the run, the exit code.
pub fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's own message, whole: its "did you mean", the valid values and the
            // missing arguments are what the user needs. A value that is not UTF-8 is named
            // by its flag, never echoed. Exit 2, as for every usage error.
            if e.kind() == clap::error::ErrorKind::InvalidUtf8 {
                let _ = writeln!(
                    std::io::stderr(),
                    "edgeprobe: error: {} (see edgeprobe --help)",
                    one_line(&non_utf8_argument())
                );
            } else {
                let _ = e.print();
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "edgeprobe: error: cannot start the async runtime: {e}"
            );
            return ExitCode::from(3);
        }
    };
    let result = runtime.block_on(run::dispatch(cli));
    // Do not wait for lingering connection tasks: every result is already in hand.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "edgeprobe: error: {}",
                one_line(error_line(&e))
            );
            ExitCode::from(e.code())
        }
    }
}

/// The longest error line printed; values echoed in errors are cut to fit.
const MAX_ERROR_LINE: usize = 400;

/// An error as one printable line, scrubbed: control characters (newlines, terminal escapes) are
/// shown escaped, and an overlong line (a 100 KB value echoed back) is cut.
fn one_line(msg: &str) -> String {
    // Errors know no secret by value, but any credential shape (a SAS token, `sig=`, a
    // SharedAccessKey, a URL password) is removed all the same.
    let msg = edgeprobe_iotedge::secret::Scrubber::new().scrub(msg);
    let mut out = String::new();
    for c in msg.trim().chars() {
        if out.len() >= MAX_ERROR_LINE {
            out.push_str("... (cut)");
            break;
        }
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Names the flag whose value is not UTF-8 (clap's own message names none).
fn non_utf8_argument() -> String {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let Some(i) = args.iter().position(|a| a.to_str().is_none()) else {
        return "an argument is not valid UTF-8".into();
    };
    let lossy = args[i].to_string_lossy();
    if let Some((flag, _)) = lossy.split_once('=').filter(|(f, _)| f.starts_with("--")) {
        return format!("{flag}: the value is not valid UTF-8");
    }
    match args.get(i.wrapping_sub(1)).and_then(|a| a.to_str()) {
        Some(flag) if i > 0 && flag.starts_with('-') && flag.len() > 1 => {
            format!("{flag}: the value is not valid UTF-8")
        }
        _ => format!("argument {i} is not valid UTF-8"),
    }
}
