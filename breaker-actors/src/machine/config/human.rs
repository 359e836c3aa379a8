//! Durations as people write them, turned into the whole milliseconds every config field
//! holds: humantime text (`"500ms"`, `"60s"`, `"1h 30m"`) in the serde form, and
//! [`Duration`]s in the builder. Both refuse what a `u64` of milliseconds cannot hold
//! exactly, rather than rounding it silently.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// `duration` in whole milliseconds, or why it is not one: a fraction of a millisecond, or
/// more milliseconds than a `u64` holds.
pub(super) fn whole_millis(duration: Duration) -> Result<u64, String> {
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!("{} is not a whole number of milliseconds", humantime::format_duration(duration)));
    }
    u64::try_from(duration.as_millis())
        .map_err(|_| format!("{} does not fit in a u64 of milliseconds", humantime::format_duration(duration)))
}

/// A duration read from humantime text, in whole milliseconds: the rule every reader of a
/// config shares (config files, the environment, and the codec's wire form of the config
/// bucket), so that `"60s"` means the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanMillis(pub u64);

impl HumanMillis {
    /// The duration given as `<name>_ms` or as `<name>`, if either; an error if both are.
    /// An explicit `null` counts as not given.
    pub fn either(name: &str, ms: Option<u64>, text: Option<Self>) -> Result<Option<u64>, String> {
        match (ms, text) {
            (Some(_), Some(_)) => Err(format!("`{name}_ms` and `{name}` are both given: give one of them")),
            (ms, text) => Ok(ms.or(text.map(|t| t.0))),
        }
    }

    /// The duration given as `<name>_ms` or as `<name>`: exactly one of them.
    pub fn required(name: &str, ms: Option<u64>, text: Option<Self>) -> Result<u64, String> {
        Self::either(name, ms, text)?.ok_or_else(|| format!("missing field `{name}_ms` (or `{name}`)"))
    }
}

impl<'de> Deserialize<'de> for HumanMillis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(HumanMillisVisitor)
    }
}

struct HumanMillisVisitor;

impl Visitor<'_> for HumanMillisVisitor {
    type Value = HumanMillis;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a duration such as "500ms", "60s" or "1h 30m""#)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanMillis, E> {
        let duration =
            humantime::parse_duration(text).map_err(|e| E::custom(format!("invalid duration {text:?}: {e}")))?;
        whole_millis(duration).map(HumanMillis).map_err(|e| E::custom(format!("invalid duration {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(json: &str) -> Result<u64, String> {
        serde_json::from_str::<HumanMillis>(json).map(|h| h.0).map_err(|e| e.to_string())
    }

    #[test]
    fn humantime_text_becomes_whole_milliseconds() {
        assert_eq!(parse(r#""500ms""#), Ok(500));
        assert_eq!(parse(r#""60s""#), Ok(60_000));
        assert_eq!(parse(r#""2m""#), Ok(120_000));
        assert_eq!(parse(r#""1h 30m""#), Ok(5_400_000));
        assert_eq!(parse(r#""0s""#), Ok(0), "zero is a duration; the validation says where it is not allowed");
    }

    #[test]
    fn bad_text_is_refused_with_the_text() {
        let err = parse(r#""6Os""#).unwrap_err();
        assert!(err.starts_with(r#"invalid duration "6Os": "#), "{err}");
        let err = parse(r#""1500us""#).unwrap_err();
        assert!(err.contains("not a whole number of milliseconds"), "{err}");
        let err = parse("60000").unwrap_err();
        assert!(err.contains(r#"expected a duration such as "500ms""#), "{err}");
    }

    #[test]
    fn durations_beyond_u64_milliseconds_are_refused() {
        assert_eq!(whole_millis(Duration::from_millis(u64::MAX)), Ok(u64::MAX));
        let err = whole_millis(Duration::from_secs(u64::MAX)).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
        assert!(whole_millis(Duration::from_micros(1_500)).is_err());
    }
}
