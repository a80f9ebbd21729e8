use super::commands::command_bounded;
use super::*;

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn commands_keep_their_last_bytes_and_stop_at_their_deadline() {
    let soon = || Instant::now() + Duration::from_secs(10);
    // 100 000 bytes of output: the last KiB from a line start, and a line saying so.
    let out = command_bounded(
        "sh",
        &args(&[
            "-c",
            "i=0; while [ $i -lt 10000 ]; do echo line-$i; i=$((i+1)); done",
        ]),
        soon(),
        1024,
        false,
    )
    .await
    .unwrap();
    let (first, rest) = out.split_once('\n').unwrap();
    assert!(first.contains("earlier bytes dropped"), "{first}");
    assert!(rest.len() <= 1024 && rest.starts_with("line-") && rest.ends_with("line-9999\n"));
    // A command that outlives its budget is killed at it, and says so.
    let started = std::time::Instant::now();
    let e = command_bounded(
        "sleep",
        &args(&["30"]),
        Instant::now() + Duration::from_millis(300),
        1024,
        false,
    )
    .await
    .unwrap_err();
    assert!(e.contains("did not finish in time"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Not installed, and failing with its reason.
    let e = command_bounded("edgeprobe-no-such-tool", &[], soon(), 1024, false)
        .await
        .unwrap_err();
    assert_eq!(e, "`edgeprobe-no-such-tool` is not installed");
    let e = command_bounded(
        "sh",
        &args(&["-c", "echo partial; echo why >&2; exit 3"]),
        soon(),
        1024,
        false,
    )
    .await
    .unwrap_err();
    assert!(e.ends_with(": why") && e.contains("exit status: 3"), "{e}");
    let ok = command_bounded(
        "sh",
        &args(&["-c", "echo partial; exit 1"]),
        soon(),
        1024,
        true,
    )
    .await;
    assert_eq!(ok.as_deref(), Ok("partial\n"));
}

#[test]
fn secret_settings_are_redacted_in_toml_and_yaml() {
    let text = "connection_string = \"HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0\"\n\
                    device_id_pk = { value = \"c2VjcmV0Mg==\" }\n\
                    password = \"hunter2\"\n\
                    https_proxy = \"http://bob:pr0xy@proxy:3128\"\n\
                    symmetric_key: \"c2VjcmV0Mw==\"\n\
                    hostname = \"keep-me\"\n";
    let out = redact_config(text);
    for secret in [
        "c2VjcmV0",
        "c2VjcmV0Mg==",
        "hunter2",
        "pr0xy",
        "c2VjcmV0Mw==",
    ] {
        assert!(!out.contains(secret), "{secret} survived:\n{out}");
    }
    assert!(out.contains("keep-me"));
    assert!(out.contains("http://bob:<redacted>@proxy:3128"), "{out}");
}
