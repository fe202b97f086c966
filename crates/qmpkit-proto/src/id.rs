//! Request ids.
//!
//! QMP lets a client tag a command with an `id` of any JSON type, and the server echoes it in
//! the response. Two ids are the same when their JSON values are equal, so `1` and `"1"` are
//! different ids; [`Id`]'s `Display` shows the JSON text, which keeps them apart in logs.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A QMP request id: any JSON value, echoed verbatim by the server.
///
/// Equality is JSON equality (object member order does not matter). Ids made by
/// [`Id::from_counter`] are plain integers, the cheapest form to route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Id(Value);

impl Id {
    /// Wraps any JSON value as an id.
    #[must_use]
    pub fn new(value: Value) -> Self {
        Id(value)
    }

    /// The id a session assigns to its `n`th command: the integer `n`.
    #[must_use]
    pub fn from_counter(n: u64) -> Self {
        Id(Value::from(n))
    }

    /// The id as a JSON value.
    #[must_use]
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// The id as a JSON value, by value.
    #[must_use]
    pub fn into_value(self) -> Value {
        self.0
    }

    /// The integer this id holds, when it is a non-negative integer.
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        self.0.as_u64()
    }
}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_value(&self.0, state);
    }
}

/// Hashes a JSON value consistently with `Value`'s equality, which ignores object member order.
fn hash_value<H: Hasher>(value: &Value, state: &mut H) {
    match value {
        Value::Null => 0u8.hash(state),
        Value::Bool(b) => (1u8, b).hash(state),
        Value::Number(n) => (2u8, n).hash(state),
        Value::String(s) => (3u8, s).hash(state),
        Value::Array(items) => {
            (4u8, items.len()).hash(state);
            for item in items {
                hash_value(item, state);
            }
        }
        Value::Object(map) => {
            // Member order must not change the hash, so combine member hashes commutatively.
            let mut sum: u64 = 0;
            for (key, member) in map {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                hash_value(member, &mut h);
                sum = sum.wrapping_add(h.finish());
            }
            (5u8, map.len(), sum).hash(state);
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id::from_counter(n)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id(Value::from(s))
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id(Value::from(s))
    }
}

impl From<Value> for Id {
    fn from(value: Value) -> Self {
        Id(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    #[test]
    fn display_tells_numbers_from_strings() {
        let cases = [(json!(1), "1"), (json!("1"), "\"1\""), (json!(null), "null"), (json!([1, "a"]), "[1,\"a\"]")];
        for (value, text) in cases {
            assert_eq!(Id::new(value).to_string(), text);
        }
    }

    #[test]
    fn equal_ids_hash_equal_regardless_of_member_order() {
        let a: Value = serde_json::from_str(r#"{"a": 1, "b": [true]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b": [true], "a": 1}"#).unwrap();
        let mut set = HashSet::new();
        set.insert(Id::new(a));
        assert!(set.contains(&Id::new(b)));
        assert!(!set.contains(&Id::from("1")));
        assert!(!set.contains(&Id::from(1)));
    }
}
