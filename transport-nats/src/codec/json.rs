//! How every JSON decoder of the codec reads a document, so that all of them read numbers,
//! keys and objects one way, the way the JSON Schemas under `schemas/` describe them:
//!
//! - a number whose value is whole is an integer however it is written (`3`, `3.0`, `3e0`),
//!   as JSON Schema's `integer` has it, and as Python's `json.dumps(6 / 2)` writes it;
//! - a key twice in one object is refused (a reader keeping the first and one keeping the
//!   last would see two different messages);
//! - a message is a JSON object (derived impls would also take a struct as an array of its
//!   fields, which would make field order part of the contract);
//! - the version is read before anything else, so a message of another version is
//!   [`DecodeError::UnsupportedVersion`] whatever else it holds.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Number, Value};

use super::{DecodeError, Format};

/// `payload` as a `T`, if it is a JSON object of version `expected`.
pub(super) fn read<T: DeserializeOwned>(payload: &[u8], expected: u16) -> Result<T, DecodeError> {
    let WireValue(value) = serde_json::from_slice(payload).map_err(|e| DecodeError::malformed(Format::Json, e))?;
    let ObjectOnly(VersionProbe { version }) =
        ObjectOnly::<VersionProbe>::deserialize(&value).map_err(|e| DecodeError::malformed(Format::Json, e))?;
    if version != expected {
        return Err(DecodeError::UnsupportedVersion { got: version });
    }
    ObjectOnly::<T>::deserialize(value).map(|object| object.0).map_err(|e| DecodeError::malformed(Format::Json, e))
}

/// Only the version of a JSON message, every other field skipped.
#[derive(Deserialize)]
struct VersionProbe {
    version: u16,
}

/// A JSON value read by the rules above: whole numbers as integers, no key twice.
struct WireValue(Value);

impl<'de> Deserialize<'de> for WireValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WireVisitor).map(WireValue)
    }
}

struct WireVisitor;

impl<'de> Visitor<'de> for WireVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        if let Some(whole) = whole(v) {
            return Ok(whole);
        }
        // The parser hands over finite numbers only ("1e999" is its own error).
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(WireValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(A::Error::custom(format_args!("the key {key:?} twice in one object")));
            }
            let WireValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// `v` as an integer, if its value is whole and fits `u64` or `i64`.
fn whole(v: f64) -> Option<Value> {
    // 2^64 and -2^63 are exact in f64; every whole f64 in range converts exactly.
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    const I64_START: f64 = -9_223_372_036_854_775_808.0;
    if v.fract() != 0.0 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    if (0.0..U64_END).contains(&v) {
        Some(Value::from(v as u64))
    } else if (I64_START..0.0).contains(&v) {
        Some(Value::from(v as i64))
    } else {
        None
    }
}

/// Deserializes `T` from a JSON object only.
pub(super) struct ObjectOnly<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(ObjectOnly)
    }
}

/// For optional fields that may be absent but not `null`, so the schema has one spelling
/// of "not given".
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn value(json: &str) -> Result<Value, String> {
        serde_json::from_str::<WireValue>(json).map(|v| v.0).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_integers_however_written() {
        for (json, want) in [("3", 3_u64), ("3.0", 3), ("3e0", 3), ("30e-1", 3), ("1E6", 1_000_000), ("-0.0", 0)] {
            assert_eq!(value(json).unwrap(), Value::from(want), "{json}");
        }
        assert_eq!(value("-2.0").unwrap(), Value::from(-2_i64));
        assert_eq!(value("18446744073709551615").unwrap(), Value::from(u64::MAX));
        assert!(value("1.5").unwrap().is_f64());
        assert!(value("1e20").unwrap().is_f64(), "beyond u64: stays a float, which no integer field takes");
        assert!(value("-1e19").unwrap().is_f64());
    }

    #[test]
    fn a_key_twice_is_refused_at_any_depth() {
        assert!(value(r#"{"a": 1, "a": 1}"#).unwrap_err().contains("twice"));
        assert!(value(r#"{"a": [{"b": 1, "b": 2}]}"#).unwrap_err().contains("twice"));
        assert_eq!(value(r#"{"a": {"a": 1}}"#).unwrap()["a"]["a"], 1);
    }
}
