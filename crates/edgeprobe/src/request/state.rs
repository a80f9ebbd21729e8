//! Where a DPS device's provisioning state lives and what it says.

use edgeprobe_iotedge::config::EdgeConfig;
use edgeprobe_iotedge::identity_state::{self, ProvisioningState};

use super::{is_host_name, usage, Inputs};
use crate::cli::CheckArgs;
use crate::AppError;

/// A DPS device whose hub no flag names: take the hub it was assigned from the identity
/// service's state, so the hub checks run beside the DPS checks (and even when DPS cannot be
/// reached). Without usable state the hub comes from DPS's status lookup later. Returns the
/// hub the state named.
pub(crate) fn provisioning_state(
    args: &CheckArgs,
    cfg: Option<&EdgeConfig>,
    inputs: &mut Inputs,
    notes: &mut Vec<String>,
) -> Result<Option<String>, AppError> {
    if inputs.dps.is_none() || inputs.vars.contains_key("iothub_hostname") {
        if args.identity_state.is_some() {
            notes.push(
                if inputs.dps.is_none() {
                    "--identity-state was not used: the device is not provisioned by DPS"
                } else {
                    "--identity-state was not used: the flags name the hub"
                }
                .into(),
            );
        }
        return Ok(None);
    }
    // Ad-hoc DPS flags without a configuration: this machine's state is not the device's.
    let Some(path) = state_path(args, cfg) else {
        return Ok(None);
    };
    let fallback = "the hub comes from DPS's registration status lookup";
    match identity_state::read(&path) {
        Ok(ProvisioningState::Assigned(a)) => {
            if !is_host_name(&a.hub) {
                return Err(usage(format!(
                    "{}: hub_name {:?} is not a host name",
                    a.source.display(),
                    a.hub
                )));
            }
            notes.push(format!(
                "the identity service's state ({}) says DPS assigned this device to {} as {}; the hub checks use that",
                a.source.display(),
                a.hub,
                a.device_id
            ));
            inputs.assign_hub(a.hub.clone(), a.device_id);
            Ok(Some(a.hub))
        }
        Ok(ProvisioningState::Unprovisioned { source }) => {
            notes.push(format!(
                "{}: the device is not provisioned yet; {fallback}",
                source.display()
            ));
            Ok(None)
        }
        // A file the user named must be usable.
        Err(e) if args.identity_state.is_some() => Err(usage(format!("--identity-state: {e}"))),
        Err(e) => {
            notes.push(format!("no provisioning state: {e}; {fallback}"));
            Ok(None)
        }
    }
}

/// Where the identity service keeps a DPS device's provisioning: `--identity-state`, else
/// the default for the configuration's IoT Edge version (under `--system-root`).
pub fn state_path(args: &CheckArgs, cfg: Option<&EdgeConfig>) -> Option<std::path::PathBuf> {
    match (&args.identity_state, cfg) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(c)) => {
            let default = identity_state::default_path(c.format, c.homedir.as_deref());
            Some(
                args.system_root
                    .join(default.strip_prefix("/").unwrap_or(&default)),
            )
        }
        (None, None) => None,
    }
}
