//! What the probes of one run share: the resolver, the TLS roots, the device's identities,
//! the proxy, and the rule for where credentials may go.

use std::sync::Arc;

use edgeprobe_core::catalog::CheckDef;
use edgeprobe_core::Endpoint;
use edgeprobe_iotedge::identity::{DeviceIdentity, DpsIdentity};
use edgeprobe_iotedge::secret::Scrubber;

use crate::dns::Dns;
use crate::proxy::ProxyConfig;
use crate::tls::TlsSettings;

/// The client id used when no device identity is known (`--no-auth` without a device id).
pub const ANONYMOUS_DEVICE: &str = "edgeprobe-probe";

/// Everything the probes of one run share.
#[derive(Debug)]
pub struct ProbeSettings {
    /// The run's one resolver: every prober of a run shares it, so each name is asked once.
    pub dns: Arc<Dns>,
    pub tls: TlsSettings,
    /// The device identity used towards IoT Hub, a parent or a gateway.
    pub identity: Option<DeviceIdentity>,
    /// The device's DPS registration, for checks against DPS.
    pub dps: Option<DpsIdentity>,
    pub proxy: Option<ProxyConfig>,
    /// `NO_PROXY` entries.
    pub no_proxy: String,
    /// Prove paths without presenting credentials.
    pub no_auth: bool,
    /// The registries the registry checks may pull from: image and credentials.
    pub registries: Vec<crate::registry::RegistryAccess>,
    /// The hosts of the services the device's credentials belong to (its IoT Hub, DPS,
    /// parent, gateway or edgeHub). Credentials — a token, a client certificate — go to
    /// these only: a check of any other host, whatever its catalog entry says, presents none.
    pub credential_hosts: Vec<String>,
    /// Streams from an in-process server instead of dns → tcp (the fast test tier);
    /// `None` on every real run.
    pub connector: Option<Arc<dyn crate::path::Connector>>,
}

impl ProbeSettings {
    /// Whether `check`, at `host`, may present the device's credentials: it asks for them
    /// (a family of the device's services, or `credentials = "device"`), and `host` is one
    /// of the device's own services.
    pub fn may_present(&self, check: &CheckDef, host: &str) -> bool {
        let endpoint = check.endpoint;
        !self.no_auth
            && check.credentials
            && matches!(
                endpoint,
                Endpoint::Iothub | Endpoint::Parent | Endpoint::Gateway | Endpoint::Dps
            )
            && self
                .credential_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }
}

impl ProbeSettings {
    /// Every secret the probes may send, for scrubbing what comes back.
    pub fn scrubber(&self) -> Scrubber {
        let mut scrubber = Scrubber::of(self.identity.iter().flat_map(|i| i.secrets()));
        if let Some(key) = self.dps.as_ref().and_then(|d| d.key.as_ref()) {
            scrubber.add(key);
        }
        if let Some(p) = &self.proxy {
            if let Some(password) = &p.password {
                scrubber.add_basic(p.username.as_deref().unwrap_or_default(), password);
            }
        }
        for r in &self.registries {
            if let Some(password) = &r.password {
                scrubber.add_basic(r.username.as_deref().unwrap_or_default(), password);
            }
        }
        scrubber
    }
}
