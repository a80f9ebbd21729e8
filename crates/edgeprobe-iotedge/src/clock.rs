//! Edge devices often lack a real-time clock. A clock that is off breaks SAS tokens (they
//! look expired or not yet valid) and certificate validity checks, and the errors the
//! runtime logs do not say "clock". The services' `Date` headers tell us their time.

use edgeprobe_core::{Outcome, Reason, Status};

/// Beyond this, tokens and certificates start to fail.
pub const MAX_SKEW_SECS: f64 = 300.0;

/// The median of the offsets (service minus device), if any.
pub fn median(offsets: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = offsets.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

fn human(secs: f64) -> String {
    let s = secs.abs();
    if s >= 86_400.0 {
        format!("{:.1} days", s / 86_400.0)
    } else if s >= 3600.0 {
        format!("{:.1} hours", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.0} minutes", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// The `device-clock` check from the offsets the HTTPS answers gave.
pub fn clock_outcome(offsets: &[f64]) -> Outcome {
    let Some(m) = median(offsets) else {
        return Outcome::skip(
            Reason::NotConfigured,
            "no HTTPS answer carried a Date header, so the clock could not be compared",
        );
    };
    let n = offsets.len();
    if m.abs() <= MAX_SKEW_SECS {
        return Outcome::new(
            Status::Pass,
            Reason::Ok,
            format!(
                "the device clock is within {} of the services' clocks (median of {n})",
                human(m)
            ),
        );
    }
    let direction = if m > 0.0 { "behind" } else { "ahead of" };
    Outcome::new(
        Status::Warn,
        Reason::ClockSkew,
        format!(
            "the device clock is {} {direction} the services' clocks (median of {n} Date headers): SAS tokens will be refused as expired or not yet valid, and certificate validity checks can fail",
            human(m)
        ),
    )
    .with_fix("synchronise the clock (timedatectl set-ntp true, or chrony/systemd-timesyncd with a reachable NTP server)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_resists_one_odd_answer() {
        assert_eq!(median(&[1.0, 2.0, 1000.0]), Some(2.0));
        assert_eq!(median(&[1.0, 3.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn skew_beyond_five_minutes_warns_and_says_what_breaks() {
        let o = clock_outcome(&[3600.0, 3601.0, 3599.0]);
        assert_eq!((o.status, o.reason), (Status::Warn, Reason::ClockSkew));
        assert!(o.message.contains("1.0 hours behind"), "{}", o.message);
        assert!(o.message.contains("SAS tokens"));
        assert_eq!(clock_outcome(&[-20.0]).status, Status::Pass);
        assert_eq!(clock_outcome(&[]).status, Status::Skip);
    }
}
