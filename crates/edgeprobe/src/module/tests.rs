use super::endpoints::selection;
use super::*;
use clap::Parser as _;

const MODULE: &str = include_str!("../../../../deploy/edgeprobe.module.json");
const COLLECTOR: &str = include_str!("../../../../deploy/metrics-collector.module.json");

#[test]
fn the_deployment_snippet_runs_serve_with_a_state_volume_and_no_secret() {
    let module: serde_json::Value = serde_json::from_str(MODULE).unwrap();
    let create: serde_json::Value = serde_json::from_str(
        module["edgeprobe"]["settings"]["createOptions"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let cmd: Vec<&str> = create["Cmd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let cli = crate::cli::Cli::try_parse_from(std::iter::once("edgeprobe").chain(cmd))
        .unwrap_or_else(|e| panic!("the snippet's Cmd does not parse: {e}"));
    let crate::cli::Command::Serve(args) = cli.command else {
        panic!("the snippet does not run serve");
    };
    let state = args.state_dir.expect("a state directory");
    let binds = create["HostConfig"]["Binds"].as_array().unwrap();
    assert!(binds.iter().any(|b| b
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", state.display()))));
    // The port is for the modules' network only: exposed, never published on the host.
    assert!(create["ExposedPorts"]["9600/tcp"].is_object());
    assert!(create["HostConfig"].get("PortBindings").is_none());
    assert_eq!(args.listen.port(), 9600);
    for secret in [
        "SharedAccessKey",
        "sas-key",
        "EDGEPROBE_SAS_KEY",
        "password",
    ] {
        assert!(!MODULE.contains(secret), "{secret} in the manifest");
    }

    let collector: serde_json::Value = serde_json::from_str(COLLECTOR).unwrap();
    let csv = collector["AzureMonitorMetricsCollector"]["env"]["MetricsEndpointsCSV"]["value"]
        .as_str()
        .unwrap();
    assert!(csv.split(',').any(|u| u == "http://edgeprobe:9600/metrics"));
}

#[test]
fn probe_selections_are_split_and_decoded() {
    assert_eq!(
        selection(Some("only=iothub-amqp,iothub-mqtt%2A&x=1&only=dps-https")),
        vec!["iothub-amqp", "iothub-mqtt*", "dps-https"]
    );
    assert!(selection(None).is_empty());
}

#[test]
fn jitter_stays_within_ten_percent() {
    for seed in [0, 1, 42, u64::MAX, 0xDEAD_BEEF] {
        let d = jittered(300.0, seed).as_secs_f64();
        assert!((270.0..=330.0).contains(&d), "{d}");
    }
}
