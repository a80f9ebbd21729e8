//! Property tests of the parsers that read user input (stable Rust's stand-in for fuzzing):
//! whatever the text, they return — no panic, in bounded time — and no error repeats a
//! secret that was in the input.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::config::{parse_str, ConfigFormat};
use crate::identity::ConnectionString;
use crate::secret::{Scrubber, Secret};

/// A key that must never show in an error.
const KEY: &str = "c2VjcmV0LWtleS1mb3ItcHJvcHRlc3RzLTAxMjM0NQ==";

/// Text pieces that configuration files and connection strings are made of.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[provisioning]\n".to_owned()),
        Just("source = \"manual\"\n".to_owned()),
        Just("source = \"dps\"\n".to_owned()),
        Just(format!(
            "connection_string = \"HostName=h.example;DeviceId=d;SharedAccessKey={KEY}\"\n"
        )),
        Just("[agent.env]\n".to_owned()),
        Just("https_proxy = \"http://u:pw@p:1\"\n".to_owned()),
        Just("provisioning:\n  source: manual\n".to_owned()),
        Just(format!(
            "  device_connection_string: \"HostName=h;DeviceId=d;SharedAccessKey={KEY}\"\n"
        )),
        Just("[[".to_owned()),
        Just("{".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just(":".to_owned()),
        Just("=".to_owned()),
        Just("\n".to_owned()),
        Just("  ".to_owned()),
        Just("- ".to_owned()),
        Just(KEY.to_owned()),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn document() -> impl Strategy<Value = String> {
    proptest::collection::vec(piece(), 0..40).prop_map(|p| p.concat())
}

/// The error, scrubbed the way the binary scrubs nothing: it must already be clean.
fn assert_clean(error: &str) -> Result<(), TestCaseError> {
    prop_assert!(!error.contains(KEY), "an error shows the key: {error}");
    prop_assert!(
        !error.contains(&KEY[..16]),
        "an error shows part of the key: {error}"
    );
    prop_assert!(!error.contains("pw@"), "an error shows a password: {error}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn config_readers_return_quickly_and_never_show_a_secret(text in document()) {
        for format in [ConfigFormat::Toml, ConfigFormat::Yaml] {
            let started = Instant::now();
            let result = parse_str(&text, "config", format);
            prop_assert!(started.elapsed() < Duration::from_secs(2));
            if let Err(e) = result {
                assert_clean(&e.to_string())?;
            }
        }
    }

    #[test]
    fn connection_strings_never_show_the_key(
        parts in proptest::collection::vec(prop_oneof![
            Just("HostName=h.example".to_owned()),
            Just("DeviceId=d".to_owned()),
            Just(format!("SharedAccessKey={KEY}")),
            Just(KEY.to_owned()),
            Just(KEY.trim_end_matches('=').to_owned()),
            Just("SharedAccessKey=".to_owned()),
            Just("x509=true".to_owned()),
            "[ -~]{0,10}",
        ], 0..8),
        sep in prop_oneof![Just(";"), Just(";;"), Just(" ; ")],
    ) {
        let text = parts.join(sep);
        if let Err(e) = text.parse::<ConnectionString>() {
            assert_clean(&e.to_string())?;
        }
    }

    #[test]
    fn the_scrubber_leaves_no_key_behind(prefix in "[ -~]{0,20}", suffix in "[ -~]{0,20}", cut in 0usize..20) {
        let scrubber = Scrubber::of([&Secret::new(KEY)]);
        let text = format!("{prefix}{KEY}{suffix}");
        let out = scrubber.scrub(&text);
        prop_assert!(!out.contains(KEY));
        // A key cut off by the end of a preview.
        let cut_text = format!("{prefix}{}", &KEY[..KEY.len() - cut]);
        let out = scrubber.scrub(&cut_text);
        prop_assert!(!out.contains(&KEY[..KEY.len() - cut]), "{out}");
    }
}
