//! The telemetry payload contract:
//!
//! ```json
//! {"ts": 1767225600000, "values": {"temperature_c": 4.2, "door_open": false}}
//! ```
//!
//! `ts` (unix milliseconds) is optional and defaults to the time of arrival; `values` maps metric
//! names to numbers (booleans count as 0/1). ThingsBoard's flat form `{"temperature_c": 4.2}` is
//! accepted too. Anything else is refused with a [`PayloadError`] that names the problem.
//!
//! A `ts` outside a window around the hub's clock ([`TsWindow`]) is refused: rules run on event
//! time and ignore readings older than a device's newest, so one reading stamped in the year 2100
//! would otherwise silence every rule of that device.

use common::UnixMs;
use serde::Deserialize;

/// One message's readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// Event time of the readings.
    pub ts: UnixMs,
    /// True when `ts` came from the device (false: the time of arrival was used).
    pub device_clock: bool,
    pub values: Vec<(String, f64)>,
}

impl Telemetry {
    pub fn get(&self, metric: &str) -> Option<f64> {
        self.values.iter().find(|(m, _)| m == metric).map(|(_, v)| *v)
    }
}

/// Why a payload was refused. Cheap to build: the hot path counts these by [`Self::reason`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    #[error("payload must be a JSON object")]
    NotAnObject,
    #[error("\"ts\" must be unix milliseconds (an integer)")]
    BadTimestamp,
    #[error("value of {0:?} is not a number")]
    NotNumeric(String),
    #[error("value of {0:?} is not finite")]
    NotFinite(String),
    #[error("no values in the payload")]
    Empty,
    #[error("metric name {0:?} is empty or longer than 64 bytes")]
    BadMetricName(String),
    #[error("more than {MAX_VALUES} values in one message")]
    TooManyValues,
    /// `ts` and the hub's clock at arrival, both unix ms.
    #[error(
        "\"ts\" {ts} is {} the hub's clock ({now}) by more than allowed; fix the device's clock \
         or see pipeline.max_clock_skew_ahead and pipeline.max_reading_age",
        if ts > now { "ahead of" } else { "behind" }
    )]
    TsOutOfWindow { ts: UnixMs, now: UnixMs },
}

/// How far a reading's `ts` may lie ahead of or behind the hub's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsWindow {
    /// Most milliseconds ahead of the hub's clock.
    pub ahead_ms: u64,
    /// Most milliseconds behind it.
    pub behind_ms: u64,
}

impl TsWindow {
    /// Accepts every `ts`.
    pub const ANY: TsWindow = TsWindow { ahead_ms: u64::MAX, behind_ms: u64::MAX };

    pub fn new(ahead: std::time::Duration, behind: std::time::Duration) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self { ahead_ms: ms(ahead), behind_ms: ms(behind) }
    }

    /// Whether `ts` is acceptable at `now`. Never overflows, whatever a device sends.
    pub fn contains(&self, ts: UnixMs, now: UnixMs) -> bool {
        let (ts, now) = (i128::from(ts), i128::from(now));
        ts <= now + i128::from(self.ahead_ms) && ts >= now - i128::from(self.behind_ms)
    }
}

/// Most values one message may carry.
pub const MAX_VALUES: usize = 64;

impl PayloadError {
    /// A fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PayloadError::Json(_) => "bad_json",
            PayloadError::NotAnObject => "not_an_object",
            PayloadError::BadTimestamp => "bad_timestamp",
            PayloadError::NotNumeric(_) => "not_numeric",
            PayloadError::NotFinite(_) => "not_finite",
            PayloadError::Empty => "empty",
            PayloadError::BadMetricName(_) => "bad_metric_name",
            PayloadError::TooManyValues => "too_many_values",
            PayloadError::TsOutOfWindow { .. } => "ts_out_of_window",
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    ts: Option<serde_json::Value>,
    #[serde(default)]
    values: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

fn number(name: &str, v: &serde_json::Value) -> Result<f64, PayloadError> {
    let x = match v {
        serde_json::Value::Number(n) => {
            n.as_f64().ok_or_else(|| PayloadError::NotFinite(name.into()))?
        }
        serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
        _ => return Err(PayloadError::NotNumeric(name.into())),
    };
    if !x.is_finite() {
        return Err(PayloadError::NotFinite(name.into()));
    }
    Ok(x)
}

/// Parses a telemetry payload; `now` (the hub's clock at arrival) is used when it carries no
/// `ts`, and a `ts` outside `window` around it is refused.
pub fn parse(payload: &[u8], now: UnixMs, window: TsWindow) -> Result<Telemetry, PayloadError> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
    if !value.is_object() {
        return Err(PayloadError::NotAnObject);
    }
    let wire: Wire =
        serde_json::from_value(value).map_err(|e| PayloadError::Json(e.to_string()))?;
    let (ts, device_clock) = match wire.ts {
        None | Some(serde_json::Value::Null) => (now, false),
        Some(serde_json::Value::Number(n)) => (n.as_i64().ok_or(PayloadError::BadTimestamp)?, true),
        Some(_) => return Err(PayloadError::BadTimestamp),
    };
    if !window.contains(ts, now) {
        return Err(PayloadError::TsOutOfWindow { ts, now });
    }
    let map = match wire.values {
        Some(m) => m,
        None => wire.rest,
    };
    if map.is_empty() {
        return Err(PayloadError::Empty);
    }
    if map.len() > MAX_VALUES {
        return Err(PayloadError::TooManyValues);
    }
    let mut values = Vec::with_capacity(map.len());
    for (k, v) in &map {
        if k.is_empty() || k.len() > 64 {
            return Err(PayloadError::BadMetricName(k.clone()));
        }
        values.push((k.clone(), number(k, v)?));
    }
    Ok(Telemetry { ts, device_clock, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn accepts_the_documented_forms() {
        let t = parse(br#"{"ts":5,"values":{"t":4.5,"door":true}}"#, 9, TsWindow::ANY).unwrap();
        assert_eq!(t.ts, 5);
        assert_eq!(t.get("t"), Some(4.5));
        assert_eq!(t.get("door"), Some(1.0));
        let flat = parse(br#"{"t":1}"#, 9, TsWindow::ANY).unwrap();
        assert_eq!((flat.ts, flat.get("t")), (9, Some(1.0)));
    }

    #[test]
    fn refuses_bad_payloads_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "bad_json"),
            (b"[1,2]", "not_an_object"),
            (br#"{"values":{"t":"hot"}}"#, "not_numeric"),
            (br#"{"values":{}}"#, "empty"),
            (br#"{"ts":"yesterday","values":{"t":1}}"#, "bad_timestamp"),
            (br#"{"ts":1.5,"values":{"t":1}}"#, "bad_timestamp"),
            (br#"{"values":{"t":null}}"#, "not_numeric"),
            (br#"{"values":{"":1}}"#, "bad_metric_name"),
        ];
        for (payload, reason) in cases {
            let err = parse(payload, 0, TsWindow::ANY).unwrap_err();
            assert_eq!(err.reason(), *reason, "{}", String::from_utf8_lossy(payload));
        }
    }

    #[test]
    fn a_ts_outside_the_window_is_refused() {
        let w = TsWindow::new(Duration::from_secs(300), Duration::from_secs(7 * 86400));
        let now = 1_767_225_600_000;
        let at = |ts: i64| parse(format!(r#"{{"ts":{ts},"values":{{"t":1}}}}"#).as_bytes(), now, w);
        assert!(at(now).is_ok());
        assert!(at(now + 300_000).is_ok());
        assert!(at(now - 7 * 86_400_000).is_ok());
        for ts in [now + 300_001, now - 7 * 86_400_000 - 1, 4_102_444_800_000, i64::MAX, i64::MIN] {
            let err = at(ts).unwrap_err();
            assert_eq!(err, PayloadError::TsOutOfWindow { ts, now });
            assert_eq!(err.reason(), "ts_out_of_window");
        }
        // Without a ts the reading is stamped with the arrival time, always inside.
        assert_eq!(parse(br#"{"t":1}"#, now, w).unwrap().ts, now);
        // The window's own arithmetic cannot overflow at the ends of the clock.
        assert!(TsWindow::ANY.contains(i64::MIN, i64::MAX) && TsWindow::ANY.contains(i64::MAX, 0));
        assert!(w.contains(i64::MIN, i64::MIN) && w.contains(i64::MAX, i64::MAX));
        assert!(!w.contains(i64::MAX, i64::MIN) && !w.contains(i64::MIN, i64::MAX));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let seeds: [&[u8]; 3] = [br#"{"ts":1,"values":{"a":1}}"#, br#"{"a":[1]}"#, b"{}"];
        for i in 0..20_000 {
            let mut buf = seeds[i % seeds.len()].to_vec();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..buf.len());
                buf[at] = rng.r#gen();
            }
            if let Ok(t) = parse(&buf, 0, TsWindow::ANY) {
                assert!(!t.values.is_empty() && t.values.iter().all(|(_, v)| v.is_finite()));
            }
        }
    }
}
