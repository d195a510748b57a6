//! Times, durations and numbers as people read them.

/// "12 s ago", "3 min ago"; `now_us` comes from the page's ticking clock.
pub fn ago(now_us: i64, t_us: i64) -> String {
    let secs = (now_us - t_us).max(0) / 1_000_000;
    match secs {
        0..=1 => "just now".into(),
        2..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// "in 3 s", "in 5 min": how long until `t_us`, for times to come.
pub fn until(now_us: i64, t_us: i64) -> String {
    let us = t_us - now_us;
    if us <= 0 {
        return "due now".into();
    }
    // Rounded up: a tick 0.4 s away is "in 1 s", never "in 0 s".
    let secs = (us + 999_999) / 1_000_000;
    match secs {
        0..=59 => format!("in {secs} s"),
        60..=3599 => format!("in {} min", secs / 60),
        3600..=86_399 => format!("in {} h", secs / 3600),
        _ => format!("in {} d", secs / 86_400),
    }
}

/// A span of time in the largest fitting unit.
pub fn duration_us(us: i64) -> String {
    let us = us.max(0);
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{} ms", us / 1_000)
    } else if us < 60_000_000 {
        format!("{} s", fixed(us as f64 / 1e6, 1))
    } else {
        let s = us / 1_000_000;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// A span people set rather than measured, in its own unit: `15 min`,
/// `1 h`, `24 h`, `7 d`, `5 s`; anything else as [`duration_us`].
pub fn span(us: i64) -> String {
    let s = us / 1_000_000;
    if us % 1_000_000 != 0 || s <= 0 {
        return duration_us(us);
    }
    if s > 86_400 && s % 86_400 == 0 {
        format!("{} d", s / 86_400)
    } else if s % 3_600 == 0 {
        format!("{} h", s / 3_600)
    } else if s % 60 == 0 {
        format!("{} min", s / 60)
    } else if s < 60 {
        format!("{s} s")
    } else {
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// `2026-11-25 01:02:03 UTC`.
pub fn utc(t_us: i64) -> String {
    let secs = t_us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `2026-11-25T01:02:03Z`: what the API's time filters take.
pub fn rfc3339(t_us: i64) -> String {
    utc(t_us).replacen(' ', "T", 1).replace(" UTC", "Z")
}

/// `2026-12-07 00:15:00 UTC+01:00`: the time in a zone `offset_min`
/// minutes east of UTC; plain [`utc`] at offset 0.
pub fn zoned(t_us: i64, offset_min: i64) -> String {
    if offset_min == 0 {
        return utc(t_us);
    }
    let shifted = utc(t_us + offset_min * 60_000_000);
    let sign = if offset_min < 0 { '-' } else { '+' };
    let m = offset_min.abs();
    format!(
        "{} UTC{sign}{:02}:{:02}",
        shifted.trim_end_matches(" UTC"),
        m / 60,
        m % 60
    )
}

/// A time in the reader's zone (the browser's offset at that time, so
/// daylight saving counts). While the server renders it is UTC: the server
/// does not know the reader's zone, so pages show times through
/// `components::Time`, which switches to this once the page is live.
pub fn local(t_us: i64) -> String {
    zoned(t_us, local_offset_min(t_us))
}

#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
fn local_offset_min(t_us: i64) -> i64 {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64((t_us / 1000) as f64));
    // JavaScript counts minutes west of UTC.
    -(date.get_timezone_offset() as i64)
}

#[cfg(not(all(feature = "hydrate", not(feature = "ssr"))))]
fn local_offset_min(_t_us: i64) -> i64 {
    0
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `12,345`: a count with thousands grouped.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A weight or priority without needless decimals: `1`, `0.5`, `12.25`.
pub fn num(x: f64) -> String {
    let s = fixed(x, 2);
    match s.split_once('.') {
        Some((whole, frac)) if frac.trim_end_matches('0').is_empty() => whole.to_string(),
        Some(_) => s.trim_end_matches('0').to_string(),
        None => s,
    }
}

/// `x` with `places` decimals, by integer arithmetic: the browser build
/// then needs no float formatting code (about 20 KB of wasm).
pub fn fixed(x: f64, places: u32) -> String {
    let scale = 10i64.pow(places);
    let n = (x * scale as f64).round() as i64;
    let sign = if n < 0 { "-" } else { "" };
    let n = n.abs();
    if places == 0 {
        return format!("{sign}{n}");
    }
    format!(
        "{sign}{}.{:0width$}",
        n / scale,
        n % scale,
        width = places as usize
    )
}

/// Pretty JSON for payloads and outputs.
pub fn json(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_group_thousands() {
        assert_eq!(super::count(0), "0");
        assert_eq!(super::count(999), "999");
        assert_eq!(super::count(1000), "1,000");
        assert_eq!(super::count(1234567), "1,234,567");
        assert_eq!(super::count(-10000), "-10,000");
    }

    #[test]
    fn rfc3339_is_what_the_api_takes() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
    }

    use super::*;

    #[test]
    fn dates_and_spans_read_naturally() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_000_000_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(ago(10_000_000, 0), "10 s ago");
        assert_eq!(ago(200_000_000, 0), "3 min ago");
        assert_eq!(until(0, 2_400_000), "in 3 s");
        assert_eq!(until(0, 300_000_000), "in 5 min");
        assert_eq!(until(0, 7_200_000_000), "in 2 h");
        assert_eq!(until(5, 5), "due now");
        assert_eq!(zoned(0, 60), "1970-01-01 01:00:00 UTC+01:00");
        assert_eq!(zoned(0, -330), "1969-12-31 18:30:00 UTC-05:30");
        assert_eq!(zoned(0, 0), utc(0));
        assert_eq!(duration_us(1_500), "1 ms");
        assert_eq!(duration_us(2_500_000), "2.5 s");
        assert_eq!(span(900_000_000), "15 min");
        assert_eq!(span(450_000_000), "7 min 30 s");
        assert_eq!(span(86_400_000_000), "24 h");
        assert_eq!(span(604_800_000_000), "7 d");
        assert_eq!(span(5_000_000), "5 s");
        assert_eq!(span(200_000), "200 ms");
        assert_eq!(num(1.0), "1");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(12.0), "12");
        assert_eq!(fixed(0.256, 2), "0.26");
        assert_eq!(fixed(-1.5, 1), "-1.5");
        assert_eq!(fixed(3.0, 2), "3.00");
    }
}
