//! What edgeprobe knows about Azure IoT Edge and IoT Hub, without touching the network:
//! device identities and their credentials, SAS tokens, the usernames each protocol
//! expects, and the `UpstreamProtocol` verdict drawn from probe outcomes.

/// Certificates' subjects and expiry, read from PEM files (never a private key).
pub mod certs;
/// The device clock against the services' `Date` headers.
pub mod clock;
/// IoT Edge configuration files: `config.toml` (1.2+) and `config.yaml` (1.1).
pub mod config;
/// Device identities, connection strings and credentials.
pub mod identity;
/// The hub a DPS device was assigned, from the identity service's state on disk.
pub mod identity_state;
/// Where each IoT Edge component takes its proxy from, and where they disagree.
pub mod proxy_sources;
/// SAS tokens: signing (for probes) and verifying (for the simulated hub).
pub mod sas;
/// Strings that must never reach any output.
pub mod secret;
/// Which `UpstreamProtocol` values work, and what to recommend.
pub mod verdict;

/// Property tests of the parsers of user input.
#[cfg(test)]
mod proptests;
