//! Durations as operators type them (`30s`, `15m`, `24h`, `7d`, `1h30m`)
//! and times as operators read them (RFC 3339, "in 14m", "3h ago").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest duration accepted: 100 years, far beyond any lock or block,
/// and small enough that `now + d` never overflows a `SystemTime`.
const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses `<number><unit>` groups, units `s`, `m`, `h`, `d`, `w`
/// (`90s`, `15m`, `1h30m`, `7d`). A bare `0` is zero.
pub(crate) fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration: use e.g. 30s, 15m, 24h or 7d".to_owned());
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(too_long)?,
            );
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => {
                return Err(
                    "invalid duration: use a number and a unit s, m, h, d or w (e.g. 30s, 15m, 24h, 7d)"
                        .to_owned(),
                );
            }
        };
        let n = number
            .take()
            .ok_or_else(|| "invalid duration: a unit must follow a number (e.g. 24h)".to_owned())?;
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(too_long)?;
    }
    if number.is_some() {
        return Err(
            "invalid duration: the number has no unit (write 30s, 15m, 24h or 7d)".to_owned(),
        );
    }
    let duration = Duration::from_secs(total);
    if duration > MAX {
        return Err(too_long());
    }
    Ok(duration)
}

fn too_long() -> String {
    "duration too long (at most 100 years)".to_owned()
}

/// A duration the way [`parse_duration`] reads it, largest units first,
/// at most two of them (`1h30m`, `7d`, `45s`).
pub(crate) fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut parts = Vec::new();
    for (unit, name) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if secs >= unit {
            parts.push(format!("{}{name}", secs / unit));
            secs %= unit;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.concat()
}

/// `at` relative to `now`: `in 14m`, `3h ago`, `now`.
pub(crate) fn relative(at: SystemTime, now: SystemTime) -> String {
    match at.duration_since(now) {
        Ok(ahead) if ahead.as_secs() == 0 => "now".to_owned(),
        Ok(ahead) => format!("in {}", format_duration(ahead)),
        Err(behind) => {
            let behind = behind.duration();
            if behind.as_secs() == 0 {
                "now".to_owned()
            } else {
                format!("{} ago", format_duration(behind))
            }
        }
    }
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_secs(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// The time `secs` seconds after the epoch, if representable.
pub(crate) fn from_unix_secs(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// `at` as RFC 3339 in UTC, to the second (`2026-12-03T08:30:00Z`).
pub(crate) fn rfc3339(at: SystemTime) -> String {
    rfc3339_secs(unix_secs(at))
}

/// Seconds since the epoch as RFC 3339 in UTC. Years outside 0..=9999 are
/// printed as they are (RFC 3339 has no form for them).
pub(crate) fn rfc3339_secs(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are small and positive by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_operators_type() {
        let ok = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(ok("30s"), Ok(30));
        assert_eq!(ok("15m"), Ok(900));
        assert_eq!(ok("24h"), Ok(86_400));
        assert_eq!(ok("7d"), Ok(604_800));
        assert_eq!(ok("2w"), Ok(1_209_600));
        assert_eq!(ok("1h30m"), Ok(5400));
        assert_eq!(ok(" 0 "), Ok(0));
        assert_eq!(ok("0s"), Ok(0));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            "h",
            "24",
            "24x",
            "-1h",
            "1.5h",
            "1 h",
            "h1",
            "99999999999999999999s",
            "36600d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["45s", "15m", "1h30m", "7d", "1d1h"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
        }
        assert_eq!(format_duration(Duration::from_secs(90_061)), "1d1h");
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_secs(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_secs(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_secs(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn relative_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(relative(now + Duration::from_secs(840), now), "in 14m");
        assert_eq!(relative(now - Duration::from_secs(3 * 3600), now), "3h ago");
        assert_eq!(relative(now, now), "now");
    }
}
