//! No secret reaches any output: runs that succeed, fail and are refused are scanned for the
//! device keys and for anything token-shaped.

use fixtures::{HubFaults, PortFault};

use crate::support::{run, set_arg, Hub, DEVICE, HUB, KEY, WRONG_KEY};

fn assert_clean(label: &str, text: &str) {
    for needle in [KEY, WRONG_KEY, "SharedAccessSignature", "sig=", "&se="] {
        assert!(
            !text.contains(needle),
            "{label}: output contains {needle:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_output_contains_a_key_or_a_token() {
    let faults = HubFaults {
        reject_credentials: false,
        mqtt: PortFault::StallAfterTls,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    for output in ["json", "text"] {
        for key in [KEY, WRONG_KEY] {
            let mut args = hub.args(2.0);
            set_arg(&mut args, "--output", output);
            set_arg(&mut args, "--sas-key", key);
            args.push("--verbose".into());
            let r = run(args).await;
            assert_clean(&format!("{output}/{key}"), &r.stdout());
            assert_clean(&format!("{output}/{key} stderr"), &r.stderr());
        }
    }
    // The connection-string path, with a refusing hub.
    let refusing = Hub::start(HubFaults {
        reject_credentials: true,
        ..HubFaults::default()
    })
    .await;
    let mut args = refusing.args(5.0);
    set_arg(&mut args, "--sas-key", KEY);
    let i = args.iter().position(|a| a == "--sas-key").unwrap();
    args.drain(i..i + 2);
    args.extend([
        "--connection-string".into(),
        format!("HostName={HUB};DeviceId={DEVICE};SharedAccessKey={KEY}"),
    ]);
    let r = run(args).await;
    assert!(r.stdout().contains("auth_rejected"));
    assert_clean("connection string", &r.stdout());
    assert_clean("connection string stderr", &r.stderr());
    // A bad connection string's error must not echo the key either.
    let r = run([
        "check",
        "--connection-string",
        &format!("HostName={HUB};SharedAccessKey={KEY}"),
    ])
    .await;
    assert_eq!(r.code(), 2);
    assert_clean("bad connection string", &r.stderr());
}
