//! Strict JSON parsing for token headers, token payloads and key sets.
//!
//! `serde_json::Value` keeps the last of two members with the same name, so an attacker who
//! can get a second `"alg"` or `"aud"` past one parser may be read differently by another.
//! This module rejects duplicate member names at every depth instead. Nesting depth is
//! bounded by serde_json's recursion limit (128 levels).

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Reason a byte string is not an acceptable JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON text (includes duplicate members and excessive nesting).
    Invalid(String),
    /// Valid JSON, but the top-level value is not an object.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Invalid(message) => write!(f, "invalid JSON: {message}"),
            JsonError::NotAnObject => f.write_str("JSON value is not an object"),
        }
    }
}

/// Parses `bytes` as one JSON object, rejecting duplicate member names and trailing data.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse_value(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

/// Parses `bytes` as one JSON value, rejecting duplicate member names and trailing data.
pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut deserializer)
        .map_err(|error| JsonError::Invalid(error.to_string()))?;
    deserializer
        .end()
        .map_err(|error| JsonError::Invalid(error.to_string()))?;
    Ok(value.0)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {key:?}"
                )));
            }
            let value = access.next_value_seed(StrictSeed)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_member_is_rejected() {
        let result = parse_object(br#"{"alg":"RS256","alg":"none"}"#);
        assert!(matches!(result, Err(JsonError::Invalid(m)) if m.contains("duplicate")));
    }

    #[test]
    fn nested_duplicate_member_is_rejected() {
        let result = parse_object(br#"{"a":{"b":1,"b":2}}"#);
        assert!(matches!(result, Err(JsonError::Invalid(_))));
    }

    #[test]
    fn array_top_level_is_not_an_object() {
        assert_eq!(parse_object(b"[1,2]"), Err(JsonError::NotAnObject));
    }

    #[test]
    fn trailing_data_is_rejected() {
        assert!(parse_object(br#"{"a":1} x"#).is_err());
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let bomb = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_object(bomb.as_bytes()).is_err());
    }

    #[test]
    fn ordinary_object_parses() {
        let map = parse_object(br#"{"iss":"x","aud":["a","b"],"exp":1,"f":1.5,"n":null}"#);
        assert_eq!(map.map(|m| m.len()), Ok(5));
    }
}
