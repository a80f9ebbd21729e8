//! The heart of edgeprobe that knows nothing about networks: what a check is, what an
//! outcome says (status, stable reason code, phases), the declarative catalog that says
//! which checks exist, and the runner that executes them concurrently under one deadline.
//!
//! Probes live in `edgeprobe-probes`; they plug in through the [`runner::Probe`] trait.

/// Reading user-named files with bounds: regular files only, a size cap, a nesting cap.
pub mod bounded;
/// Checks as data: the catalog format, its families and its built-in content.
pub mod catalog;
/// Outcomes, phases, statuses and the closed sets the JSON contract promises.
pub mod model;
/// Timing of the phases a probe walks through, readable even when the probe is cancelled.
pub mod recorder;
/// Concurrent execution of planned checks under a single deadline.
pub mod runner;

pub use model::*;

/// Property tests of the parsers of user input.
#[cfg(test)]
mod proptests;
