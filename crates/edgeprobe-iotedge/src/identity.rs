//! Who the probes claim to be. A device identity comes from a connection string, from
//! `--iothub-hostname`/`--device-id` with a key or an X.509 certificate, or from nothing at
//! all (`--no-auth`): then every path is still proven, by the service refusing us.

use std::path::PathBuf;

use crate::sas;
use crate::secret::Secret;

/// The API version in IoT Hub MQTT usernames.
pub const IOTHUB_API_VERSION: &str = "2021-04-12";

/// A device connection string that could not be used. Never echoes the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionStringError {
    #[error("connection string lacks {0}")]
    Missing(&'static str),
    /// The 1-based position of the part: the part itself might be the key.
    #[error("connection string part {0} is not Key=Value")]
    Malformed(usize),
    #[error("connection string SharedAccessKey is not valid base64")]
    BadKey,
    #[error("connection string {0} is empty")]
    Empty(&'static str),
    #[error("connection string names {0} twice")]
    Duplicate(&'static str),
}

/// The parts of a device connection string edgeprobe reads.
const KNOWN_PARTS: [&str; 6] = [
    "HostName",
    "DeviceId",
    "ModuleId",
    "SharedAccessKey",
    "GatewayHostName",
    "x509",
];

/// A parsed device connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionString {
    pub host_name: String,
    pub device_id: String,
    pub module_id: Option<String>,
    pub key: Option<Secret>,
    pub gateway_host_name: Option<String>,
    pub x509: bool,
}

impl std::str::FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut seen: [Option<String>; 6] = Default::default();
        for (i, part) in s.trim().split(';').enumerate() {
            if part.trim().is_empty() {
                continue;
            }
            // Keys hold '=' padding, so split on the first '=' only.
            let (k, v) = part
                .split_once('=')
                .ok_or(ConnectionStringError::Malformed(i + 1))?;
            let Some(slot) = KNOWN_PARTS.iter().position(|name| *name == k.trim()) else {
                continue;
            };
            if seen[slot].is_some() {
                return Err(ConnectionStringError::Duplicate(KNOWN_PARTS[slot]));
            }
            if v.trim().is_empty() {
                return Err(ConnectionStringError::Empty(KNOWN_PARTS[slot]));
            }
            seen[slot] = Some(v.trim().to_owned());
        }
        let [host, device, module, key, gateway, x509] = seen;
        let key = key.map(Secret::new);
        let x509 = x509.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let key = match key {
            Some(k) => {
                sas::validate_key(&k).map_err(|_| ConnectionStringError::BadKey)?;
                Some(k)
            }
            None => None,
        };
        if key.is_none() && !x509 {
            return Err(ConnectionStringError::Missing(
                "SharedAccessKey (or x509=true)",
            ));
        }
        Ok(ConnectionString {
            host_name: host.ok_or(ConnectionStringError::Missing("HostName"))?,
            device_id: device.ok_or(ConnectionStringError::Missing("DeviceId"))?,
            module_id: module,
            key,
            gateway_host_name: gateway,
            x509,
        })
    }
}

/// How the probes authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// Prove the paths only: the service's refusal is the proof.
    None,
    /// A device's symmetric key (base64).
    SasKey(Secret),
    /// A client certificate and key presented in TLS.
    X509 { cert: PathBuf, key: PathBuf },
    /// A SAS token for this identity's resource, signed elsewhere: the IoT Edge workload API
    /// signs a module's tokens, so its key never leaves the device's key service.
    SignedToken(Secret),
    /// Configured, but unusable here; the reason says why (e.g. key file unreadable).
    Unavailable(String),
}

/// The device (or one of its modules) the probes act as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub hub: String,
    pub device_id: String,
    /// A module identity of the device (`edgeprobe serve` as an IoT Edge module).
    pub module_id: Option<String>,
    pub credentials: Credentials,
}

impl DeviceIdentity {
    /// `{deviceId}`, or `{deviceId}/{moduleId}`: the MQTT client id and what usernames carry.
    pub fn client_id(&self) -> String {
        match &self.module_id {
            Some(m) => format!("{}/{m}", self.device_id),
            None => self.device_id.clone(),
        }
    }

    /// MQTT username for IoT Hub (and edgeHub): `{hub}/{clientId}/?api-version=...`.
    pub fn mqtt_username(&self) -> String {
        format!(
            "{}/{}/?api-version={IOTHUB_API_VERSION}",
            self.hub,
            self.client_id()
        )
    }

    /// The SAS resource (and CBS audience) of this device or module.
    pub fn resource(&self) -> String {
        match &self.module_id {
            Some(m) => sas::module_resource(&self.hub, &self.device_id, m),
            None => sas::device_resource(&self.hub, &self.device_id),
        }
    }

    /// The AMQP telemetry link address; attaching proves authorization.
    pub fn events_address(&self) -> String {
        match &self.module_id {
            Some(m) => format!("/devices/{}/modules/{m}/messages/events", self.device_id),
            None => format!("/devices/{}/messages/events", self.device_id),
        }
    }

    /// A fresh SAS token when the identity has a key.
    pub fn sas_token(&self) -> Option<Result<Secret, sas::SasError>> {
        match &self.credentials {
            Credentials::SasKey(key) => Some(sas::token(
                &self.resource(),
                key,
                sas::unix_now() + sas::TOKEN_LIFETIME_SECS,
                None,
            )),
            Credentials::SignedToken(token) => Some(Ok(token.clone())),
            _ => None,
        }
    }

    /// Secrets this identity holds, for scrubbing text that came from elsewhere.
    pub fn secrets(&self) -> Vec<&Secret> {
        match &self.credentials {
            Credentials::SasKey(k) | Credentials::SignedToken(k) => vec![k],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_parse_and_errors_never_show_the_key() {
        let cs: ConnectionString =
            "HostName=h.azure-devices.net;DeviceId=d1;SharedAccessKey=YWJjZA==;GatewayHostName=gw"
                .parse()
                .unwrap();
        assert_eq!(cs.host_name, "h.azure-devices.net");
        assert_eq!(cs.device_id, "d1");
        assert_eq!(cs.key.unwrap().expose(), "YWJjZA==");
        assert_eq!(cs.gateway_host_name.as_deref(), Some("gw"));

        let cases = [
            (
                "DeviceId=d;SharedAccessKey=YWJjZA==",
                "connection string lacks HostName",
            ),
            (
                "HostName=h;SharedAccessKey=YWJjZA==",
                "connection string lacks DeviceId",
            ),
            (
                "HostName=h;DeviceId=d",
                "connection string lacks SharedAccessKey (or x509=true)",
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=%%%",
                "connection string SharedAccessKey is not valid base64",
            ),
            // Regression: a part without '=' (an unpadded key pasted alone) was echoed.
            (
                "HostName=h;DeviceId=d;YWJjZA",
                "connection string part 3 is not Key=Value",
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=",
                "connection string SharedAccessKey is empty",
            ),
            // Regression: the last of two keys silently won.
            (
                "HostName=h;DeviceId=d;SharedAccessKey=YWJjZA==;SharedAccessKey=YWJjZA==",
                "connection string names SharedAccessKey twice",
            ),
            (
                "HostName=h;HostName=h2;DeviceId=d;SharedAccessKey=YWJjZA==",
                "connection string names HostName twice",
            ),
        ];
        for (input, want) in cases {
            let err = input.parse::<ConnectionString>().unwrap_err().to_string();
            assert_eq!(err, want);
            assert!(!err.contains("YWJjZA"));
        }
    }

    #[test]
    fn usernames_follow_iot_hub_conventions() {
        let mut id = DeviceIdentity {
            hub: "h.azure-devices.net".into(),
            device_id: "d1".into(),
            module_id: None,
            credentials: Credentials::None,
        };
        assert_eq!(
            id.mqtt_username(),
            "h.azure-devices.net/d1/?api-version=2021-04-12"
        );
        assert_eq!(id.events_address(), "/devices/d1/messages/events");
        // A module: its own client id, username, token resource and telemetry address.
        id.module_id = Some("edgeprobe".into());
        assert_eq!(id.client_id(), "d1/edgeprobe");
        assert_eq!(
            id.mqtt_username(),
            "h.azure-devices.net/d1/edgeprobe/?api-version=2021-04-12"
        );
        assert_eq!(
            id.resource(),
            "h.azure-devices.net/devices/d1/modules/edgeprobe"
        );
        assert_eq!(
            id.events_address(),
            "/devices/d1/modules/edgeprobe/messages/events"
        );
    }
}

/// The API version in DPS MQTT usernames.
pub const DPS_MQTT_API_VERSION: &str = "2019-03-31";
/// The API version of DPS's HTTPS registration status lookup.
pub const DPS_HTTPS_API_VERSION: &str = "2021-10-01";
/// The default global DPS endpoint.
pub const DPS_GLOBAL_ENDPOINT: &str = "global.azure-devices-provisioning.net";

/// A device's registration with the Device Provisioning Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpsIdentity {
    pub id_scope: String,
    pub registration_id: String,
    /// The device's symmetric key (already derived, for a group enrollment).
    pub key: Option<Secret>,
    /// Enrolled through an enrollment group (`--dps-group-key`), not individually.
    pub group_enrollment: bool,
}

impl DpsIdentity {
    /// The SAS resource and AMQP PLAIN user: `{idScope}/registrations/{registrationId}`.
    pub fn resource(&self) -> String {
        format!("{}/registrations/{}", self.id_scope, self.registration_id)
    }

    /// MQTT username: `{idScope}/registrations/{registrationId}/api-version=...` (no `?`).
    pub fn mqtt_username(&self) -> String {
        format!("{}/api-version={DPS_MQTT_API_VERSION}", self.resource())
    }

    /// The registration status lookup path (never `.../register`, which re-provisions).
    pub fn status_lookup_path(&self) -> String {
        format!(
            "/{}/registrations/{}?api-version={DPS_HTTPS_API_VERSION}",
            sas::url_encode(&self.id_scope),
            sas::url_encode(&self.registration_id)
        )
    }

    /// A fresh SAS token with `skn=registration`, when there is a key.
    pub fn sas_token(&self) -> Option<Result<Secret, sas::SasError>> {
        self.key.as_ref().map(|key| {
            sas::token(
                &self.resource(),
                key,
                sas::unix_now() + sas::TOKEN_LIFETIME_SECS,
                Some("registration"),
            )
        })
    }
}

#[cfg(test)]
mod dps_tests {
    use super::*;

    #[test]
    fn dps_names_follow_the_documented_formats() {
        let d = DpsIdentity {
            id_scope: "0ne00ABCDEF".into(),
            registration_id: "dev-1".into(),
            key: Some(Secret::new("YWJjZA==")),
            group_enrollment: false,
        };
        assert_eq!(
            d.mqtt_username(),
            "0ne00ABCDEF/registrations/dev-1/api-version=2019-03-31"
        );
        assert_eq!(
            d.status_lookup_path(),
            "/0ne00ABCDEF/registrations/dev-1?api-version=2021-10-01"
        );
        let token = d.sas_token().unwrap().unwrap();
        assert!(token
            .expose()
            .contains("sr=0ne00ABCDEF%2Fregistrations%2Fdev-1"));
        assert!(token.expose().ends_with("&skn=registration"));
    }
}
