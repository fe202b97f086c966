//! Serde types for the entities of `query-qmp-schema` (QAPI's `SchemaInfo`) and for the name
//! lists of `query-commands` / `query-events`.
//!
//! The types are lenient on input, because the introspection format grows with QEMU: unknown
//! members are ignored, and an entity with a meta-type this crate does not know is kept as
//! [`SchemaInfo::Other`] instead of failing the whole schema. Output is QEMU's format: optional
//! keys are left out when empty, and `allow-oob` is written only when true.

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The `meta-type` of a [`SchemaInfo`], kept as text for meta-types added after this crate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MetaType {
    /// A predefined type such as `str` or `int`.
    Builtin,
    /// An enumeration of strings.
    Enum,
    /// A JSON array of one element type.
    Array,
    /// A JSON object, possibly a flat union (`tag` and `variants`).
    Object,
    /// One of several types, chosen by the JSON type of the value.
    Alternate,
    /// A command.
    Command,
    /// An event.
    Event,
    /// A meta-type unknown to this crate, kept so that newer QEMUs still load.
    Other(String),
}

impl MetaType {
    /// The wire spelling, so callers can print or compare without matching every variant.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            MetaType::Builtin => "builtin",
            MetaType::Enum => "enum",
            MetaType::Array => "array",
            MetaType::Object => "object",
            MetaType::Alternate => "alternate",
            MetaType::Command => "command",
            MetaType::Event => "event",
            MetaType::Other(other) => other,
        }
    }

    /// Parses the wire spelling; anything unknown becomes [`MetaType::Other`].
    #[must_use]
    pub fn parse(text: &str) -> Self {
        match text {
            "builtin" => MetaType::Builtin,
            "enum" => MetaType::Enum,
            "array" => MetaType::Array,
            "object" => MetaType::Object,
            "alternate" => MetaType::Alternate,
            "command" => MetaType::Command,
            "event" => MetaType::Event,
            other => MetaType::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for MetaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `json-type` of a builtin: which JSON values it accepts. Unknown spellings are kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum JsonType {
    /// A JSON string (`str`).
    String,
    /// Any JSON number (`number`).
    Number,
    /// A JSON integer (`int` and every sized integer type).
    Int,
    /// `true` or `false` (`bool`).
    Boolean,
    /// JSON `null` (`null`).
    Null,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// Any JSON value (`any`).
    Value,
    /// A spelling unknown to this crate.
    Other(String),
}

impl JsonType {
    /// The wire spelling.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Int => "int",
            JsonType::Boolean => "boolean",
            JsonType::Null => "null",
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::Value => "value",
            JsonType::Other(other) => other,
        }
    }
}

impl From<String> for JsonType {
    fn from(text: String) -> Self {
        match text.as_str() {
            "string" => JsonType::String,
            "number" => JsonType::Number,
            "int" => JsonType::Int,
            "boolean" => JsonType::Boolean,
            "null" => JsonType::Null,
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            "value" => JsonType::Value,
            _ => JsonType::Other(text),
        }
    }
}

impl From<JsonType> for String {
    fn from(json_type: JsonType) -> Self {
        json_type.as_str().to_owned()
    }
}

/// A builtin type (`meta-type: builtin`), such as `str`, `int` or `any`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SchemaInfoBuiltin {
    /// The type's name; builtins keep their real names (`str`, `int`, ...).
    pub name: String,
    /// Which JSON values the type accepts.
    pub json_type: JsonType,
    /// Feature flags (none exist for builtins today).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// One value of an enum, with its features (QEMU 6.2 and later).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfoEnumMember {
    /// The value.
    pub name: String,
    /// Feature flags, such as `deprecated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// An enum type (`meta-type: enum`).
///
/// QEMU 6.2 added `members`; `values` is the older, deprecated spelling that QEMU still sends.
/// Use [`SchemaInfoEnum::value_names`] to read whichever is present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfoEnum {
    /// The (masked) type name.
    pub name: String,
    /// The values with their features (QEMU 6.2 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<SchemaInfoEnumMember>>,
    /// The values as plain strings (deprecated, still sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// Feature flags of the type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl SchemaInfoEnum {
    /// The enum's values from `members` if present, else from `values`, so old and new QEMUs
    /// read alike.
    pub fn value_names(&self) -> impl Iterator<Item = &str> {
        let from_members = self.members.iter().flatten().map(|m| m.name.as_str());
        let from_values = if self.members.is_none() { self.values.as_deref() } else { None };
        from_members.chain(from_values.into_iter().flatten().map(String::as_str))
    }
}

/// An array type (`meta-type: array`), named `"[" + element + "]"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SchemaInfoArray {
    /// The name, such as `[int]` or `[418]`.
    pub name: String,
    /// The name of the element type.
    pub element_type: String,
    /// Feature flags (none today).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// One member of an object type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfoObjectMember {
    /// The member's JSON key.
    pub name: String,
    /// The name of its type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `Some(null)` when the key was present: the member is optional. `None`: mandatory.
    ///
    /// QEMU only ever sends `null` here; a non-null value is reserved for a future default.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Feature flags, such as `deprecated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl SchemaInfoObjectMember {
    /// Whether the member may be left out, which the presence of `default` says.
    #[must_use]
    pub fn is_optional(&self) -> bool {
        self.default.is_some()
    }
}

/// Deserializes a present key as `Some`, even when its value is `null`; with
/// `#[serde(default)]` an absent key stays `None`. This keeps `"default": null` distinct from
/// no `default` at all.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// One branch of a flat union: when the tag member has value `case`, the members of `type`
/// are also accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfoObjectVariant {
    /// The tag value selecting this branch.
    pub case: String,
    /// The name of the object type whose members the branch adds.
    #[serde(rename = "type")]
    pub type_: String,
}

/// An object type (`meta-type: object`); a flat union when `tag` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfoObject {
    /// The (masked) type name.
    pub name: String,
    /// The members, base members first, as QEMU visits them.
    #[serde(default)]
    pub members: Vec<SchemaInfoObjectMember>,
    /// For a flat union, the name of the member whose value selects a variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// For a flat union, the variants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<SchemaInfoObjectVariant>,
    /// Feature flags of the type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// One branch of an alternate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfoAlternateMember {
    /// The name of the branch's type.
    #[serde(rename = "type")]
    pub type_: String,
}

/// An alternate type (`meta-type: alternate`): the JSON type of a value picks the branch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfoAlternate {
    /// The (masked) type name.
    pub name: String,
    /// The branches.
    #[serde(default)]
    pub members: Vec<SchemaInfoAlternateMember>,
    /// Feature flags of the type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// A command (`meta-type: command`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SchemaInfoCommand {
    /// The command's real name.
    pub name: String,
    /// The name of its argument object type (the empty object when it takes none).
    pub arg_type: String,
    /// The name of its return type (the empty object when it returns nothing).
    pub ret_type: String,
    /// Whether `exec-oob` may run it; QEMU writes the key only when true.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_oob: bool,
    /// Feature flags, such as `deprecated` or `unstable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// An event (`meta-type: event`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SchemaInfoEvent {
    /// The event's real name.
    pub name: String,
    /// The name of the object type of its `data` (the empty object when it has none).
    pub arg_type: String,
    /// Feature flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// An entity whose meta-type this crate does not know, kept whole so newer QEMUs load.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaInfoOther {
    /// The entity's name.
    pub name: String,
    /// Its unknown meta-type.
    pub meta_type: String,
    /// Its features, if it has a valid `features` list.
    pub features: Vec<String>,
    /// Every other key, verbatim.
    pub rest: Map<String, Value>,
}

/// One entity of `query-qmp-schema`: QAPI's `SchemaInfo`, selected by `meta-type`.
#[derive(Clone, Debug, PartialEq)]
pub enum SchemaInfo {
    /// `meta-type: builtin`.
    Builtin(SchemaInfoBuiltin),
    /// `meta-type: enum`.
    Enum(SchemaInfoEnum),
    /// `meta-type: array`.
    Array(SchemaInfoArray),
    /// `meta-type: object`.
    Object(SchemaInfoObject),
    /// `meta-type: alternate`.
    Alternate(SchemaInfoAlternate),
    /// `meta-type: command`.
    Command(SchemaInfoCommand),
    /// `meta-type: event`.
    Event(SchemaInfoEvent),
    /// Any other meta-type.
    Other(SchemaInfoOther),
}

impl SchemaInfo {
    /// The entity's name: real for commands, events and builtins, masked for other types.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            SchemaInfo::Builtin(i) => &i.name,
            SchemaInfo::Enum(i) => &i.name,
            SchemaInfo::Array(i) => &i.name,
            SchemaInfo::Object(i) => &i.name,
            SchemaInfo::Alternate(i) => &i.name,
            SchemaInfo::Command(i) => &i.name,
            SchemaInfo::Event(i) => &i.name,
            SchemaInfo::Other(i) => &i.name,
        }
    }

    /// The entity's meta-type.
    #[must_use]
    pub fn meta_type(&self) -> MetaType {
        match self {
            SchemaInfo::Builtin(_) => MetaType::Builtin,
            SchemaInfo::Enum(_) => MetaType::Enum,
            SchemaInfo::Array(_) => MetaType::Array,
            SchemaInfo::Object(_) => MetaType::Object,
            SchemaInfo::Alternate(_) => MetaType::Alternate,
            SchemaInfo::Command(_) => MetaType::Command,
            SchemaInfo::Event(_) => MetaType::Event,
            SchemaInfo::Other(i) => MetaType::Other(i.meta_type.clone()),
        }
    }

    /// The entity's feature flags.
    #[must_use]
    pub fn features(&self) -> &[String] {
        match self {
            SchemaInfo::Builtin(i) => &i.features,
            SchemaInfo::Enum(i) => &i.features,
            SchemaInfo::Array(i) => &i.features,
            SchemaInfo::Object(i) => &i.features,
            SchemaInfo::Alternate(i) => &i.features,
            SchemaInfo::Command(i) => &i.features,
            SchemaInfo::Event(i) => &i.features,
            SchemaInfo::Other(i) => &i.features,
        }
    }

    /// Whether the entity is a type (anything but a command or an event).
    #[must_use]
    pub fn is_type(&self) -> bool {
        !matches!(self, SchemaInfo::Command(_) | SchemaInfo::Event(_))
    }
}

impl<'de> Deserialize<'de> for SchemaInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        let meta = match map.get("meta-type") {
            Some(Value::String(meta)) => MetaType::parse(meta),
            Some(_) => return Err(D::Error::custom("`meta-type` is not a string")),
            None => return Err(D::Error::missing_field("meta-type")),
        };
        fn typed<T: serde::de::DeserializeOwned, E: serde::de::Error>(map: Map<String, Value>) -> Result<T, E> {
            serde_json::from_value(Value::Object(map)).map_err(E::custom)
        }
        Ok(match meta {
            MetaType::Builtin => SchemaInfo::Builtin(typed(map)?),
            MetaType::Enum => SchemaInfo::Enum(typed(map)?),
            MetaType::Array => SchemaInfo::Array(typed(map)?),
            MetaType::Object => SchemaInfo::Object(typed(map)?),
            MetaType::Alternate => SchemaInfo::Alternate(typed(map)?),
            MetaType::Command => SchemaInfo::Command(typed(map)?),
            MetaType::Event => SchemaInfo::Event(typed(map)?),
            MetaType::Other(meta_type) => {
                let name = match map.remove("name") {
                    Some(Value::String(name)) => name,
                    _ => return Err(D::Error::missing_field("name")),
                };
                map.remove("meta-type");
                let features = match map.remove("features") {
                    Some(value) => serde_json::from_value(value).unwrap_or_default(),
                    None => Vec::new(),
                };
                SchemaInfo::Other(SchemaInfoOther { name, meta_type, features, rest: map })
            }
        })
    }
}

impl Serialize for SchemaInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let body = match self {
            SchemaInfo::Builtin(i) => serde_json::to_value(i),
            SchemaInfo::Enum(i) => serde_json::to_value(i),
            SchemaInfo::Array(i) => serde_json::to_value(i),
            SchemaInfo::Object(i) => serde_json::to_value(i),
            SchemaInfo::Alternate(i) => serde_json::to_value(i),
            SchemaInfo::Command(i) => serde_json::to_value(i),
            SchemaInfo::Event(i) => serde_json::to_value(i),
            SchemaInfo::Other(i) => {
                let mut map = i.rest.clone();
                if !i.features.is_empty() {
                    map.insert("features".into(), i.features.clone().into());
                }
                Ok(Value::Object(map))
            }
        }
        .map_err(S::Error::custom)?;
        // Name and meta-type first, then the rest in declaration order: easy to read.
        let mut out = Map::new();
        out.insert("name".into(), Value::String(self.name().to_owned()));
        out.insert("meta-type".into(), Value::String(self.meta_type().as_str().to_owned()));
        if let Value::Object(body) = body {
            for (key, value) in body {
                if key != "name" {
                    out.insert(key, value);
                }
            }
        }
        out.serialize(serializer)
    }
}

/// One entry of the `query-commands` reply: a command's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// The command's name.
    pub name: String,
}

/// One entry of the `query-events` reply (a command QEMU has removed, kept for old servers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// The event's name.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses `input`, compares its debug form with `expected`, and checks that serializing
    /// gives back the same JSON (round trip of the wire format).
    fn check(input: Value, expected: &str) {
        let info: SchemaInfo = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(format!("{info:?}"), expected);
        let back = serde_json::to_value(&info).unwrap();
        assert_eq!(back, input);
    }

    #[test]
    fn entities() {
        check(
            json!({"name": "str", "meta-type": "builtin", "json-type": "string"}),
            r#"Builtin(SchemaInfoBuiltin { name: "str", json_type: String, features: [] })"#,
        );
        check(
            json!({"name": "q", "meta-type": "command", "arg-type": "0", "ret-type": "1", "allow-oob": true}),
            r#"Command(SchemaInfoCommand { name: "q", arg_type: "0", ret_type: "1", allow_oob: true, features: [] })"#,
        );
        check(
            json!({"name": "q", "meta-type": "command", "arg-type": "0", "ret-type": "1", "features": ["deprecated"]}),
            r#"Command(SchemaInfoCommand { name: "q", arg_type: "0", ret_type: "1", allow_oob: false, features: ["deprecated"] })"#,
        );
        check(
            json!({"name": "E", "meta-type": "event", "arg-type": "0"}),
            r#"Event(SchemaInfoEvent { name: "E", arg_type: "0", features: [] })"#,
        );
        check(
            json!({"name": "[int]", "meta-type": "array", "element-type": "int"}),
            r#"Array(SchemaInfoArray { name: "[int]", element_type: "int", features: [] })"#,
        );
        check(
            json!({"name": "3", "meta-type": "enum", "members": [{"name": "a"}, {"name": "b", "features": ["deprecated"]}], "values": ["a", "b"]}),
            r#"Enum(SchemaInfoEnum { name: "3", members: Some([SchemaInfoEnumMember { name: "a", features: [] }, SchemaInfoEnumMember { name: "b", features: ["deprecated"] }]), values: Some(["a", "b"]), features: [] })"#,
        );
        check(
            json!({"name": "4", "meta-type": "object", "members": [{"name": "a", "type": "str"}, {"name": "b", "type": "int", "default": null}], "tag": "a", "variants": [{"case": "x", "type": "5"}]}),
            r#"Object(SchemaInfoObject { name: "4", members: [SchemaInfoObjectMember { name: "a", type_: "str", default: None, features: [] }, SchemaInfoObjectMember { name: "b", type_: "int", default: Some(Null), features: [] }], tag: Some("a"), variants: [SchemaInfoObjectVariant { case: "x", type_: "5" }], features: [] })"#,
        );
        check(
            json!({"name": "6", "meta-type": "alternate", "members": [{"type": "str"}, {"type": "null"}]}),
            r#"Alternate(SchemaInfoAlternate { name: "6", members: [SchemaInfoAlternateMember { type_: "str" }, SchemaInfoAlternateMember { type_: "null" }], features: [] })"#,
        );
        check(
            json!({"name": "7", "meta-type": "frobnicator", "knobs": [1, 2], "features": ["unstable"]}),
            r#"Other(SchemaInfoOther { name: "7", meta_type: "frobnicator", features: ["unstable"], rest: {"knobs": Array [Number(1), Number(2)]} })"#,
        );
    }

    #[test]
    fn unknown_keys_are_ignored_and_old_enums_read() {
        let info: SchemaInfo =
            serde_json::from_value(json!({"name": "1", "meta-type": "enum", "values": ["x", "y"], "if": "future"}))
                .unwrap();
        let SchemaInfo::Enum(e) = info else { panic!("not an enum") };
        assert_eq!(e.value_names().collect::<Vec<_>>(), ["x", "y"]);
        let builtin: SchemaInfo =
            serde_json::from_value(json!({"name": "i128", "meta-type": "builtin", "json-type": "bigint"})).unwrap();
        assert_eq!(builtin.features(), &[] as &[String]);
        let SchemaInfo::Builtin(b) = builtin else { panic!("not a builtin") };
        assert_eq!(b.json_type, JsonType::Other("bigint".into()));
    }

    #[test]
    fn malformed_entities_are_errors() {
        for bad in [
            json!({"name": "x"}),
            json!({"name": "x", "meta-type": 3}),
            json!({"name": "x", "meta-type": "command", "arg-type": "0"}),
            json!({"meta-type": "whatever"}),
            json!([1]),
        ] {
            assert!(serde_json::from_value::<SchemaInfo>(bad.clone()).is_err(), "{bad}");
        }
    }
}
