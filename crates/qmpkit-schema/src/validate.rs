//! Validation of a command's `arguments` (or an event's `data`) against the schema, with the
//! error texts QEMU's QObject input visitor produces, found in the order QEMU finds them.
//!
//! QEMU walks an object's members in schema order (base members, then the members of the
//! variant the tag selects). For each member it reports, in this order:
//!
//! * a missing mandatory member: `Parameter 'a.b' is missing`;
//! * a value of the wrong JSON type: `Invalid parameter type for 'a.b', expected: string`, with
//!   `string`, `integer`, `number`, `boolean`, `null`, `object` or `array`;
//! * an enum value it does not know: `Parameter 'b' does not accept value 'x'`;
//! * for sized integers (known only to builder-made schemas): `Parameter 'b' expects uint8_t`;
//!
//! and descends into nested objects and arrays as it meets them. Arrays and objects nested
//! deeper than QEMU's parser accepts (1024 levels, which only a value built by hand can be)
//! are refused with its text, `JSON nesting depth limit exceeded`. Only once every member of an
//! object is valid does it report a key that is not a member: `Parameter 'a.c' is unexpected`.
//!
//! Names are rendered as QEMU renders them: nested members as `a.b`, array elements as
//! `a[0]`. Three messages use only the innermost name instead (QEMU passes the bare name to
//! them): the enum value error, the integer range error and the alternate type error; for an
//! array element the bare name is `null`. That is why `qmp_capabilities` with
//! `{"enable": ["bogus"]}` answers `Parameter 'null' does not accept value 'bogus'`, and this
//! module reproduces it.
//!
//! Where this differs from QEMU, by necessity:
//!
//! * When several keys are unexpected, QEMU reports the first in its hash table's order; this
//!   module reports the first in the input's order.
//! * Introspection folds every integer type into `int`. For a schema loaded from QEMU an
//!   `int` accepts any JSON integer from `i64::MIN` to `u64::MAX` (it may be a `uint64`), and a
//!   non-integer is reported with `int64`'s text (`expected: integer`); a `uint64` member
//!   would say `Parameter 'x' expects uint64` instead.
//! * An alternate that has no branch for the value's JSON type is reported with the type's
//!   name, which QEMU masks in introspection: builder-made schemas know the real name, loaded
//!   ones print the masked name.
//! * `device_add` is not generated from its schema in QEMU (`gen: false`) and accepts any
//!   device property, so unexpected keys are not reported for it.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::index::{Command, Event, IntKind, ObjectType, Type, TypeKind};
use crate::model::JsonType;

/// QEMU's `MAX_NESTING`: the deepest nesting of arrays and objects its JSON parser accepts.
const MAX_NESTING: usize = 1024;

/// The commands whose QEMU marshaller is written by hand and accepts keys its schema lacks.
const ACCEPTS_EXTRA_KEYS: &[&str] = &["device_add"];

/// What kind of problem an [`ArgumentError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgumentErrorKind {
    /// A mandatory member is absent.
    Missing,
    /// A key is not a member.
    Unexpected,
    /// A value has the wrong JSON type.
    InvalidType,
    /// A string is not one of an enum's values.
    InvalidEnumValue,
    /// An integer is outside the range of its sized type, or not an unsigned integer.
    OutOfRange,
    /// Arrays and objects are nested deeper than QEMU's JSON parser accepts (1024 levels,
    /// counting the arguments object), which only a value built by hand can be.
    TooDeep,
}

/// An invalid argument, described with QEMU's exact text. QEMU reports every such error with
/// class `GenericError`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{desc}")]
pub struct ArgumentError {
    kind: ArgumentErrorKind,
    name: String,
    desc: String,
}

impl ArgumentError {
    /// The error class QEMU sends with it: always `GenericError`.
    pub const CLASS: &'static str = "GenericError";

    /// What kind of problem it is.
    #[must_use]
    pub fn kind(&self) -> ArgumentErrorKind {
        self.kind
    }

    /// The parameter name as it appears in the text (`a.b`, `a[0]`, or a bare name).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// QEMU's human-readable text, the `desc` of the error reply.
    #[must_use]
    pub fn desc(&self) -> &str {
        &self.desc
    }

    /// The error class: always `GenericError`.
    #[must_use]
    pub fn class(&self) -> &'static str {
        Self::CLASS
    }
}

/// One step from the arguments object down to the value being checked.
#[derive(Clone, Debug)]
enum Step {
    Member(String),
    Index(usize),
}

/// An array or object being walked, with how far the walk got in it.
enum Open<'s, 'v> {
    Array {
        element: Type<'s>,
        items: &'v [Value],
        /// The index of the next element to check.
        next: usize,
        /// The integer width of the elements, when the member is an array of sized integers.
        int_kind: Option<IntKind>,
    },
    Object {
        map: &'v Map<String, Value>,
        /// The object, or the union variant, whose members are being checked.
        current: ObjectType<'s>,
        /// The index in `current` of the next member to check.
        next: usize,
        /// The objects of the chain of variants entered so far: each is checked once, so a
        /// union that is its own variant ends.
        chain: HashSet<usize>,
        /// The keys that are members, for the check of unexpected keys at the end.
        visited: HashSet<&'s str>,
        /// Whether keys that are not members are accepted (`device_add`).
        extra_keys_ok: bool,
    },
}

/// A nested value to check: its step from its container, its type, and the integer width
/// its member declares.
type Child<'s, 'v> = (Step, Type<'s>, &'v Value, Option<IntKind>);

impl<'s, 'v> Open<'s, 'v> {
    fn object(ty: ObjectType<'s>, map: &'v Map<String, Value>, extra_keys_ok: bool) -> Self {
        let chain = HashSet::from([ty.index]);
        Open::Object { map, current: ty, next: 0, chain, visited: HashSet::new(), extra_keys_ok }
    }

    /// The next nested value to check, with its step and type, or `None` once every one
    /// was checked and the container itself is valid. QEMU's order: an object's members in
    /// schema order, then those of the variant its tag selects (and so on down the chain),
    /// and only then a key that is not a member.
    fn next_child(&mut self, walker: &Walker) -> Result<Option<Child<'s, 'v>>, ArgumentError> {
        match self {
            Open::Array { element, items, next, int_kind } => {
                let Some(item) = items.get(*next) else { return Ok(None) };
                *next += 1;
                Ok(Some((Step::Index(*next - 1), *element, item, *int_kind)))
            }
            Open::Object { map, current, next, chain, visited, extra_keys_ok } => loop {
                if let Some(member) = current.member_at(*next) {
                    *next += 1;
                    let Some(value) = map.get(member.name()) else {
                        if member.optional() {
                            continue;
                        }
                        let name = walker.name_of(member.name());
                        let desc = format!("Parameter '{name}' is missing");
                        return Err(Walker::err(ArgumentErrorKind::Missing, name, desc));
                    };
                    visited.insert(member.name());
                    return Ok(Some((Step::Member(member.name().to_owned()), member.ty(), value, member.int_kind())));
                }
                let variant = match current.tag().and_then(|tag| map.get(tag)) {
                    Some(Value::String(case)) => current.variant(case).and_then(|t| t.as_object()),
                    _ => None,
                };
                if let Some(variant) = variant.filter(|v| chain.insert(v.index)) {
                    (*current, *next) = (variant, 0);
                    continue;
                }
                if *extra_keys_ok {
                    return Ok(None);
                }
                return match map.keys().find(|k| !visited.contains(k.as_str())) {
                    Some(key) => {
                        let name = walker.name_of(key);
                        let desc = format!("Parameter '{name}' is unexpected");
                        Err(Walker::err(ArgumentErrorKind::Unexpected, name, desc))
                    }
                    None => Ok(None),
                };
            },
        }
    }
}

/// The walker: the path to the current value, as QEMU's visitor keeps its stack.
struct Walker {
    path: Vec<Step>,
}

impl Walker {
    /// QEMU's `full_name()`: members joined by `.`, indices as `[n]`.
    fn full_name(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            match step {
                Step::Member(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The full name of member `member` of the current value.
    fn name_of(&self, member: &str) -> String {
        let mut name = self.full_name();
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(member);
        name
    }

    /// The bare name QEMU passes to some messages: the innermost member, or `null` for an
    /// array element.
    fn bare_name(&self) -> String {
        match self.path.last() {
            Some(Step::Member(name)) => name.clone(),
            _ => "null".to_owned(),
        }
    }

    fn err(kind: ArgumentErrorKind, name: String, desc: String) -> ArgumentError {
        ArgumentError { kind, name, desc }
    }

    fn invalid_type(&self, expected: &str) -> ArgumentError {
        let name = self.full_name();
        let desc = format!("Invalid parameter type for '{name}', expected: {expected}");
        Self::err(ArgumentErrorKind::InvalidType, name, desc)
    }

    fn expects(&self, name: String, what: &str) -> ArgumentError {
        let desc = format!("Parameter '{name}' expects {what}");
        Self::err(ArgumentErrorKind::OutOfRange, name, desc)
    }

    /// Checks `value` against `ty`, and everything nested in it, in QEMU's order. The path to
    /// `value` is already on `self.path`.
    ///
    /// The walk keeps its own stack of open arrays and objects instead of recursing, so that
    /// neither a deep value nor a long chain of types in a peer's schema uses the thread's
    /// stack; the depth of values is bounded by [`MAX_NESTING`] all the same.
    fn check<'s, 'v>(&mut self, root: Open<'s, 'v>) -> Result<(), ArgumentError> {
        let mut open = vec![root];
        while let Some(top) = open.last_mut() {
            match top.next_child(self)? {
                Some((step, ty, value, int_kind)) => {
                    self.path.push(step);
                    match self.enter(ty, value, int_kind)? {
                        Some(child) => open.push(child),
                        None => {
                            self.path.pop();
                        }
                    }
                }
                None => {
                    open.pop();
                    // The root's step belongs to the caller; every other one was pushed here.
                    if !open.is_empty() {
                        self.path.pop();
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks `value` against `ty` as far as it can without looking inside it: a scalar is
    /// checked whole, an array or object is opened for [`Walker::check`] to walk.
    fn enter<'s, 'v>(
        &self,
        ty: Type<'s>,
        value: &'v Value,
        int_kind: Option<IntKind>,
    ) -> Result<Option<Open<'s, 'v>>, ArgumentError> {
        match ty.kind() {
            TypeKind::Builtin(json_type) => self.builtin(json_type, value, int_kind).map(|()| None),
            TypeKind::Enum(e) => {
                let Value::String(s) = value else { return Err(self.invalid_type("string")) };
                if e.contains(s) {
                    Ok(None)
                } else {
                    let name = self.bare_name();
                    let desc = format!("Parameter '{name}' does not accept value '{s}'");
                    Err(Self::err(ArgumentErrorKind::InvalidEnumValue, name, desc))
                }
            }
            TypeKind::Array(element) => {
                let Value::Array(items) = value else { return Err(self.invalid_type("array")) };
                self.descend()?;
                Ok(Some(Open::Array { element, items, next: 0, int_kind }))
            }
            TypeKind::Object(o) => {
                let Value::Object(map) = value else { return Err(self.invalid_type("object")) };
                self.descend()?;
                Ok(Some(Open::object(o, map, false)))
            }
            TypeKind::Alternate(alt) => {
                // QEMU picks the branch by the value's JSON type; no branch is an alternate
                // (`accepts_json_kind` says no to them), so this recurses once at most.
                match alt.members().find(|branch| accepts_json_kind(*branch, value)) {
                    Some(branch) => self.enter(branch, value, int_kind),
                    None => {
                        let name = self.bare_name();
                        let type_name = ty.real_name().unwrap_or(ty.name());
                        let desc = format!("Invalid parameter type for '{name}', expected: {type_name}");
                        Err(Self::err(ArgumentErrorKind::InvalidType, name, desc))
                    }
                }
            }
            TypeKind::Other => Ok(None),
        }
    }

    /// Refuses to open a container nested deeper than QEMU's parser accepts, so that a value
    /// built by hand cannot make the walk unbounded. Levels count from the arguments object
    /// (level 1); [`Type::validate_value`] checks its value as a member of one (level 2).
    fn descend(&self) -> Result<(), ArgumentError> {
        if self.path.len() < MAX_NESTING {
            return Ok(());
        }
        let name = self.full_name();
        Err(Self::err(ArgumentErrorKind::TooDeep, name, "JSON nesting depth limit exceeded".to_owned()))
    }

    fn builtin(&self, json_type: &JsonType, value: &Value, int_kind: Option<IntKind>) -> Result<(), ArgumentError> {
        let ok = match json_type {
            JsonType::String => value.is_string(),
            JsonType::Number => value.is_number(),
            JsonType::Boolean => value.is_boolean(),
            JsonType::Null => value.is_null(),
            JsonType::Object => value.is_object(),
            JsonType::Array => value.is_array(),
            JsonType::Value | JsonType::Other(_) => true,
            JsonType::Int => return self.integer(value, int_kind),
        };
        if ok { Ok(()) } else { Err(self.invalid_type(expected_word(json_type))) }
    }

    /// QEMU's integer checks: `int64` needs a JSON integer in `i64`; `uint64` and `size` take
    /// any JSON integer in `i64` or `u64` (negative ones wrap, for backward compatibility); the
    /// narrower types then check the range.
    fn integer(&self, value: &Value, int_kind: Option<IntKind>) -> Result<(), ArgumentError> {
        let number = value.as_number();
        let (signed, unsigned) = match number {
            Some(n) => (n.as_i64(), n.as_u64()),
            None => (None, None),
        };
        let Some(kind) = int_kind else {
            // Unknown width (introspection): any integer a QEMU integer type could accept.
            return if signed.is_some() || unsigned.is_some() { Ok(()) } else { Err(self.invalid_type("integer")) };
        };
        let (min, max, c_name): (i64, i64, &str) = match kind {
            IntKind::Int64 => (i64::MIN, i64::MAX, "int64_t"),
            IntKind::Int8 => (i8::MIN.into(), i8::MAX.into(), "int8_t"),
            IntKind::Int16 => (i16::MIN.into(), i16::MAX.into(), "int16_t"),
            IntKind::Int32 => (i32::MIN.into(), i32::MAX.into(), "int32_t"),
            IntKind::Uint8 | IntKind::Uint16 | IntKind::Uint32 | IntKind::Uint64 | IntKind::Size => {
                let as_u64 = match (unsigned, signed) {
                    (Some(u), _) => u,
                    (None, Some(i)) => u64::from_ne_bytes(i.to_ne_bytes()),
                    (None, None) => return Err(self.expects(self.full_name(), "uint64")),
                };
                let (max, c_name): (u64, &str) = match kind {
                    IntKind::Uint8 => (u8::MAX.into(), "uint8_t"),
                    IntKind::Uint16 => (u16::MAX.into(), "uint16_t"),
                    IntKind::Uint32 => (u32::MAX.into(), "uint32_t"),
                    _ => (u64::MAX, "uint64_t"),
                };
                return if as_u64 > max { Err(self.expects(self.bare_name(), c_name)) } else { Ok(()) };
            }
        };
        let Some(v) = signed else { return Err(self.invalid_type("integer")) };
        if v < min || v > max { Err(self.expects(self.bare_name(), c_name)) } else { Ok(()) }
    }
}

/// The word QEMU's visitor puts after `expected:` for each builtin.
fn expected_word(json_type: &JsonType) -> &str {
    match json_type {
        JsonType::String => "string",
        JsonType::Int => "integer",
        JsonType::Number => "number",
        JsonType::Boolean => "boolean",
        JsonType::Null => "null",
        JsonType::Object => "object",
        JsonType::Array => "array",
        JsonType::Value => "any",
        JsonType::Other(other) => other,
    }
}

/// Whether alternate branch `branch` is the one QEMU picks for `value`'s JSON type.
fn accepts_json_kind(branch: Type<'_>, value: &Value) -> bool {
    match branch.kind() {
        TypeKind::Builtin(json_type) => match json_type {
            JsonType::String => value.is_string(),
            JsonType::Int | JsonType::Number => value.is_number(),
            JsonType::Boolean => value.is_boolean(),
            JsonType::Null => value.is_null(),
            JsonType::Object => value.is_object(),
            JsonType::Array => value.is_array(),
            JsonType::Value | JsonType::Other(_) => true,
        },
        TypeKind::Enum(_) => value.is_string(),
        TypeKind::Array(_) => value.is_array(),
        TypeKind::Object(_) => value.is_object(),
        TypeKind::Alternate(_) | TypeKind::Other => false,
    }
}

/// Checks `value` against `ty` and, for an object, every member of it.
fn check_object(ty: Type<'_>, args: Option<&Map<String, Value>>, lenient_top_level: bool) -> Result<(), ArgumentError> {
    let empty = Map::new();
    let map = args.unwrap_or(&empty);
    let mut walker = Walker { path: Vec::new() };
    match ty.kind() {
        TypeKind::Object(o) => walker.check(Open::object(o, map, lenient_top_level)),
        // Not an object type (a malformed schema): nothing QEMU would accept can be checked.
        _ => Ok(()),
    }
}

impl Command<'_> {
    /// Checks a command's `arguments` as QEMU would before running it. `None` means the
    /// request had no `arguments` member, which QEMU treats as `{}`.
    ///
    /// # Errors
    /// The first problem QEMU would report, with its exact text; see the [module
    /// documentation](crate::validate) for the order and the few known differences.
    pub fn validate(&self, arguments: Option<&Map<String, Value>>) -> Result<(), ArgumentError> {
        check_object(self.arg_type(), arguments, ACCEPTS_EXTRA_KEYS.contains(&self.name()))
    }
}

impl Event<'_> {
    /// Checks an event's `data` against its schema, for a server that wants to be sure what
    /// it emits matches what it advertises. `None` means the event has no `data`.
    ///
    /// # Errors
    /// The first mismatch, described as QEMU would describe it for command arguments.
    pub fn validate(&self, data: Option<&Map<String, Value>>) -> Result<(), ArgumentError> {
        check_object(self.arg_type(), data, false)
    }
}

impl Type<'_> {
    /// Checks any JSON value against this type, naming it `name` in error texts (QEMU names
    /// a top-level value by its member name).
    ///
    /// # Errors
    /// The first mismatch, with QEMU's text.
    pub fn validate_value(&self, name: &str, value: &Value) -> Result<(), ArgumentError> {
        let mut walker = Walker { path: vec![Step::Member(name.to_owned())] };
        match walker.enter(*self, value, None)? {
            Some(open) => walker.check(open),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::fixture;
    use serde_json::json;

    /// Validates `args` (`null` = no `arguments` member) for `command` in the fixture schema
    /// and compares the verdict, `ok` or QEMU's desc text, with `expected`.
    fn check(command: &str, args: Value, expected: &str) {
        let schema = fixture();
        let cmd = schema.command(command).expect("command in fixture");
        let verdict = match &args {
            Value::Null => cmd.validate(None),
            Value::Object(map) => cmd.validate(Some(map)),
            other => panic!("bad test input {other}"),
        };
        let got = match verdict {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                assert_eq!(e.class(), "GenericError");
                assert_eq!(e.to_string(), e.desc());
                e.desc().to_owned()
            }
        };
        assert_eq!(got, expected, "{command} {args}");
    }

    /// The cases of the 15_18_command_errors and 03_qmp_capabilities_oob transcripts, with
    /// the texts QEMU 7.2.22 and 10.0.2 sent.
    #[test]
    fn transcripts() {
        check(
            "human-monitor-command",
            json!({"command-line": 42}),
            "Invalid parameter type for 'command-line', expected: string",
        );
        check(
            "query-cpu-model-expansion",
            json!({"type": 5, "model": {"name": "max"}}),
            "Invalid parameter type for 'type', expected: string",
        );
        check("query-version", json!({"foo": 1}), "Parameter 'foo' is unexpected");
        check(
            "human-monitor-command",
            json!({"command-line": "info status", "bogus": true}),
            "Parameter 'bogus' is unexpected",
        );
        check("human-monitor-command", json!({}), "Parameter 'command-line' is missing");
        check("human-monitor-command", Value::Null, "Parameter 'command-line' is missing");
        check(
            "query-cpu-model-expansion",
            json!({"type": "bogus", "model": {"name": "max"}}),
            "Parameter 'type' does not accept value 'bogus'",
        );
    }

    #[test]
    fn qmp_capabilities() {
        check("qmp_capabilities", json!({"enable": ["oob"]}), "ok");
        check("qmp_capabilities", json!({"enable": ["bogus"]}), "Parameter 'null' does not accept value 'bogus'");
        check("qmp_capabilities", json!({"enable": "oob"}), "Invalid parameter type for 'enable', expected: array");
        check("qmp_capabilities", json!({"enable": []}), "ok");
        check("qmp_capabilities", Value::Null, "ok");
        check(
            "qmp_capabilities",
            json!({"enable": ["oob", 1]}),
            "Invalid parameter type for 'enable[1]', expected: string",
        );
    }

    #[test]
    fn order_and_nesting() {
        // Missing is found in member order, before any unexpected key.
        check("query-cpu-model-expansion", json!({"zzz": 1}), "Parameter 'type' is missing");
        check("query-cpu-model-expansion", json!({"type": "full"}), "Parameter 'model' is missing");
        check("query-cpu-model-expansion", json!({"type": "full", "model": {}}), "Parameter 'model.name' is missing");
        check(
            "query-cpu-model-expansion",
            json!({"type": "full", "model": {"name": 1}}),
            "Invalid parameter type for 'model.name', expected: string",
        );
        check(
            "query-cpu-model-expansion",
            json!({"type": "full", "model": "max"}),
            "Invalid parameter type for 'model', expected: object",
        );
        // A nested object's unexpected key is found when it is finished, before later members.
        check(
            "query-cpu-model-expansion",
            json!({"model": {"name": "max", "x": 1}, "type": "full", "y": 2}),
            "Parameter 'model.x' is unexpected",
        );
        check(
            "query-cpu-model-expansion",
            json!({"type": "full", "model": {"name": "max", "props": {"anything": [1]}}}),
            "ok",
        );
        // The type error of the first member wins over a later missing member.
        check("human-monitor-command", json!({"cpu-index": "0"}), "Parameter 'command-line' is missing");
        check(
            "human-monitor-command",
            json!({"command-line": "x", "cpu-index": "0"}),
            "Invalid parameter type for 'cpu-index', expected: integer",
        );
        check(
            "human-monitor-command",
            json!({"command-line": "x", "cpu-index": null}),
            "Invalid parameter type for 'cpu-index', expected: integer",
        );
        check(
            "human-monitor-command",
            json!({"command-line": "x", "cpu-index": 1.5}),
            "Invalid parameter type for 'cpu-index', expected: integer",
        );
        check("human-monitor-command", json!({"command-line": "x", "cpu-index": 18446744073709551615u64}), "ok");
        check("human-monitor-command", json!({"command-line": "x", "cpu-index": -3}), "ok");
    }

    #[test]
    fn builtins_and_arrays() {
        check("set-numbers", json!({"ints": [1, 2, -3]}), "ok");
        check("set-numbers", json!({"ints": [1, "2"]}), "Invalid parameter type for 'ints[1]', expected: integer");
        check("set-numbers", json!({"ints": {}}), "Invalid parameter type for 'ints', expected: array");
        check("set-numbers", json!({"ints": [], "ratio": 1}), "ok");
        check("set-numbers", json!({"ints": [], "ratio": 0.5}), "ok");
        check(
            "set-numbers",
            json!({"ints": [], "ratio": "0.5"}),
            "Invalid parameter type for 'ratio', expected: number",
        );
        check("set-numbers", json!({"ints": [], "blob": [null, {}]}), "ok");
        check("set-numbers", json!({"ints": [], "nothing": null}), "ok");
        check("set-numbers", json!({"ints": [], "nothing": 0}), "Invalid parameter type for 'nothing', expected: null");
        check(
            "blockdev-add",
            json!({"driver": "null-co", "read-only": "yes"}),
            "Invalid parameter type for 'read-only', expected: boolean",
        );
    }

    #[test]
    fn alternates() {
        check("set-numbers", json!({"ints": [], "strornull": null}), "ok");
        check("set-numbers", json!({"ints": [], "strornull": "x"}), "ok");
        check(
            "set-numbers",
            json!({"ints": [], "strornull": 1}),
            "Invalid parameter type for 'strornull', expected: 334",
        );
        check("set-numbers", json!({"ints": [], "ref": "node0"}), "ok");
        check("set-numbers", json!({"ints": [], "ref": {"driver": "file", "filename": "/x"}}), "ok");
        check("set-numbers", json!({"ints": [], "ref": {"driver": "file"}}), "Parameter 'ref.filename' is missing");
        check("set-numbers", json!({"ints": [], "ref": true}), "Invalid parameter type for 'ref', expected: 290");
    }

    #[test]
    fn flat_unions() {
        check("blockdev-add", json!({"driver": "file", "filename": "/tmp/x"}), "ok");
        check("blockdev-add", json!({"driver": "file"}), "Parameter 'filename' is missing");
        check("blockdev-add", json!({}), "Parameter 'driver' is missing");
        check("blockdev-add", json!({"driver": "vvfat"}), "Parameter 'driver' does not accept value 'vvfat'");
        check("blockdev-add", json!({"driver": 7}), "Invalid parameter type for 'driver', expected: string");
        // A member of another variant is unexpected.
        check("blockdev-add", json!({"driver": "null-co", "filename": "/x"}), "Parameter 'filename' is unexpected");
        check("blockdev-add", json!({"driver": "null-co", "size": 512, "node-name": "n"}), "ok");
        // An empty variant, and a tag value with no listed variant, add no members.
        check("blockdev-add", json!({"driver": "qcow2"}), "ok");
        check("blockdev-add", json!({"driver": "gluster", "x": 1}), "Parameter 'x' is unexpected");
        check(
            "blockdev-add",
            json!({"driver": "file", "filename": "/x", "locking": "on"}),
            "Parameter 'locking' does not accept value 'on'",
        );
        // Nested unions through an alternate.
        check("blockdev-add", json!({"driver": "raw", "file": {"driver": "file", "filename": "/x"}}), "ok");
        check(
            "blockdev-add",
            json!({"driver": "raw", "file": {"driver": "null-co", "size": "1"}}),
            "Invalid parameter type for 'file.size', expected: integer",
        );
        check(
            "blockdev-add",
            json!({"driver": "raw", "file": {"driver": "file", "filename": "/x", "locking": "x"}}),
            "Parameter 'locking' does not accept value 'x'",
        );
        check(
            "blockdev-add",
            json!({"driver": "raw", "file": {"driver": "file", "filename": "/x", "extra": 1}}),
            "Parameter 'file.extra' is unexpected",
        );
    }

    #[test]
    fn events_and_values() {
        let schema = fixture();
        let reset = schema.event("RESET").unwrap();
        let data = json!({"guest": false, "reason": "host-qmp-system-reset"});
        assert_eq!(reset.validate(data.as_object()), Ok(()));
        let err = reset.validate(None).unwrap_err();
        assert_eq!(
            (err.kind(), err.name(), err.desc()),
            (ArgumentErrorKind::Missing, "guest", "Parameter 'guest' is missing")
        );
        assert_eq!(schema.event("STOP").unwrap().validate(None), Ok(()));
        let status = schema.type_("262").unwrap();
        assert_eq!(status.validate_value("status", &json!("running")), Ok(()));
        assert_eq!(
            status.validate_value("status", &json!("flying")).unwrap_err().desc(),
            "Parameter 'status' does not accept value 'flying'"
        );
    }
}
