//! Property tests of the parsers of user input in this crate: proxy URLs, PEM files and the
//! `--connect-to`/`--resolve` specs. No panic, bounded time, and no password in an error.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::dns::Overrides;
use crate::proxy::ProxyConfig;
use crate::tls::parse_pem_certs;

const PASSWORD: &str = "Pr0xyP4ssw0rd";

fn url_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("http://".to_owned()),
        Just("https://".to_owned()),
        Just("socks5://".to_owned()),
        Just(format!("alice:{PASSWORD}@")),
        Just(format!("alice:{PASSWORD}/x@")),
        Just(format!(":{PASSWORD}@")),
        Just("proxy.corp".to_owned()),
        Just("[::1]".to_owned()),
        Just("[".to_owned()),
        Just(":3128".to_owned()),
        Just(":0".to_owned()),
        Just(":99999".to_owned()),
        Just("/".to_owned()),
        Just("@".to_owned()),
        Just("%".to_owned()),
        "[ -~]{0,8}",
    ]
}

fn pem_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
        Just(b"-----END CERTIFICATE-----\n".to_vec()),
        Just(b"-----BEGIN PRIVATE KEY-----\n".to_vec()),
        Just(b"MIIBszCCAVmgAwIBAgIU\n".to_vec()),
        Just(b"====\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn proxy_urls_parse_or_fail_without_the_password(
        pieces in proptest::collection::vec(url_piece(), 0..8)
    ) {
        let url = pieces.concat();
        let started = Instant::now();
        let result = ProxyConfig::parse(&url);
        prop_assert!(started.elapsed() < Duration::from_secs(1));
        match result {
            Err(e) => {
                prop_assert!(!e.contains(PASSWORD), "{url:?}: {e}");
                prop_assert!(!e.contains("alice"), "{url:?}: {e}");
                prop_assert!(!e.contains('\n'), "{url:?}: {e}");
            }
            Ok(p) => {
                prop_assert!(!p.redacted().contains(PASSWORD));
                let debug = format!("{:?}", p);
                prop_assert!(!debug.contains(PASSWORD));
                prop_assert!(p.port != 0);
            }
        }
    }

    #[test]
    fn pem_input_never_panics(pieces in proptest::collection::vec(pem_piece(), 0..12)) {
        let bytes = pieces.concat();
        let started = Instant::now();
        let _ = parse_pem_certs(&bytes, "bundle.pem");
        prop_assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn connect_to_and_resolve_specs_never_panic(spec in "[a-z0-9.:\\[\\]]{0,40}") {
        let mut o = Overrides::default();
        if o.add_connect_to(&spec).is_ok() {
            prop_assert!(!spec.ends_with(":0"));
        }
        let _ = o.add_resolve(&spec);
    }
}
