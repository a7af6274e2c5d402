//! Times and durations as the simplestreams tools spell them.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::error::{Error, Result};

/// RFC 2822 in UTC as simplestreams writes it: `Sun, 22 Nov 2026 00:52:13 +0000`.
pub fn rfc2822(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn from_unix(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

/// Parses an RFC 2822 time (any zone), as found in `orphans.json`.
pub fn parse_rfc2822(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Usage(format!("invalid RFC 2822 time '{s}': {e}")))
}

/// Parses a duration like meph2-util's `--older`: one or more `[0-9]+[dhms]`
/// tokens, summed (`1d12h`); a bare number means days.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        Error::Usage(format!(
            "invalid duration '{s}': expected tokens like 3d, 12h, 30m, 10s (a bare number is days)"
        ))
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let days: u64 = s.parse().map_err(|_| bad())?;
        return days
            .checked_mul(86400)
            .map(Duration::from_secs)
            .ok_or_else(bad);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        if num.is_empty() {
            return Err(bad());
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sum_tokens_and_bare_numbers_are_days() {
        assert_eq!(parse_duration("3d").unwrap().as_secs(), 3 * 86400);
        assert_eq!(
            parse_duration("1d12h").unwrap().as_secs(),
            86400 + 12 * 3600
        );
        assert_eq!(parse_duration("2").unwrap().as_secs(), 2 * 86400);
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
    }

    #[test]
    fn malformed_durations_are_rejected_with_the_input_named() {
        for bad in ["3x", "", "d", "1d2", "-1d", "1.5d"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn rfc2822_round_trips() {
        let t = from_unix(1_795_222_333);
        let s = rfc2822(t);
        assert!(s.ends_with(" +0000"), "{s}");
        assert_eq!(parse_rfc2822(&s).unwrap(), t);
    }
}
