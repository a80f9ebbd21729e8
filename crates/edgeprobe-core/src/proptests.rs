//! Property tests of the check catalog reader and the nesting pre-scan: any text gives a
//! catalog or a one-line error, quickly, never a panic.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::bounded::check_depth;
use crate::catalog::Catalog;

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[[check]]\n".to_owned()),
        Just("[[family]]\n".to_owned()),
        Just("id = \"my-check\"\n".to_owned()),
        Just("title = \"t\"\n".to_owned()),
        Just("endpoint = \"device\"\n".to_owned()),
        Just("protocol = \"https\"\n".to_owned()),
        Just("protocols = [\"mqtt\", \"amqp\"]\n".to_owned()),
        Just("host = \"h.example\"\n".to_owned()),
        Just("port = 0\n".to_owned()),
        Just("port = 70000\n".to_owned()),
        Just("requires = [\"device_id\"]\n".to_owned()),
        Just("[".to_owned()),
        Just("{".to_owned()),
        Just("\"".to_owned()),
        Just("\n".to_owned()),
        "[ -~]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn catalog_files_load_or_fail_in_one_line(pieces in proptest::collection::vec(piece(), 0..30)) {
        let text = pieces.concat();
        let started = Instant::now();
        let mut catalog = Catalog::default();
        if check_depth(&text).is_ok() {
            if let Err(e) = catalog.add_text("mine.toml", &text) {
                let e = e.to_string();
                prop_assert!(!e.contains('\n'), "two lines: {e}");
            }
        }
        prop_assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_depth_scan_is_linear(open in "[\\[{ a-z\"'#\n]{0,2000}") {
        let started = Instant::now();
        let _ = check_depth(&open);
        prop_assert!(started.elapsed() < Duration::from_millis(200));
    }
}
