//! The `edgeprobe` command: parses flags, builds the run from them, runs it and renders
//! the report. It owns exit codes (PRODUCT.md): 0 the device can run, 1 it cannot,
//! 2 usage or configuration error, 3 internal error.

/// `edgeprobe bundle`: the report and the facts a support engineer asks for, secrets redacted.
mod bundle;
/// Clap definitions of every command and flag.
mod cli;
/// `edgeprobe demo`: the simulated hub and a check against it.
mod demo;
/// The gateway view: edgeHub's inbound ports on this device.
mod gateway_view;
/// `edgeprobe serve`: the long-running module mode, its HTTP endpoints and its history.
mod module;
/// A progress indicator on a terminal.
mod progress;
/// Container registry checks (`registry-*`) and their data endpoints (`registry-data-*`).
mod registries;
/// `edgeprobe check` and `edgeprobe list`.
mod run;
/// `edgeprobe serve-fixture`: the simulated hub as a process, for tests and the lab.
mod serve;
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

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's own message, whole: its "did you mean", the valid values and the
            // missing arguments are what the user needs. Exit 2, as for every usage error.
            let _ = e.print();
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
            let _ = writeln!(std::io::stderr(), "edgeprobe: error: {}", error_line(&e));
            ExitCode::from(e.code())
        }
    }
}
