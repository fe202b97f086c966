//! [`Schema`]: the entities of `query-qmp-schema`, indexed by name, with every type reference
//! resolved once at load time into a graph that the views walk without failing.
//!
//! Type names other than builtins and arrays are masked by QEMU (`"0"`, `"1"`, ...), so the
//! graph, not the names, carries the meaning: a command's argument type is reached through
//! [`Command::arg_type`], its members through [`ObjectType::members`], and so on.

use std::collections::HashMap;

use serde_json::Value;

use crate::model::{
    JsonType, MetaType, SchemaInfo, SchemaInfoAlternate, SchemaInfoCommand, SchemaInfoEnum, SchemaInfoEnumMember,
    SchemaInfoEvent, SchemaInfoObject, SchemaInfoObjectMember,
};

/// Why a schema could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The input is not JSON, or an entity is malformed (for example lacks `name`).
    #[error("invalid schema JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The input is neither the `return` array nor a reply object holding one.
    #[error("a schema is a JSON array of SchemaInfo objects (the `return` of query-qmp-schema)")]
    NotAnArray,
    /// Two entities share a name; QAPI names are unique across meta-types.
    #[error("two schema entities are named '{0}'")]
    DuplicateName(String),
    /// An entity references a type name that no entity has.
    #[error("'{entity}' references type '{type_name}', which the schema does not define")]
    UnknownType {
        /// The referring entity.
        entity: String,
        /// The missing name.
        type_name: String,
    },
    /// An entity nests arrays and objects deeper than [`MAX_ENTITY_NESTING`]; QEMU's are
    /// four levels deep, and reading a deeper one would recurse once per level.
    #[error("schema entity '{0}' nests arrays and objects more than {max} levels deep", max = MAX_ENTITY_NESTING)]
    TooDeep(String),
    /// An entity references a command or an event where a type is needed.
    #[error("'{entity}' references '{type_name}', which is a command or an event, not a type")]
    NotAType {
        /// The referring entity.
        entity: String,
        /// The name of the command or event.
        type_name: String,
    },
}

/// How deeply one entity of a schema may nest arrays and objects (itself the first level).
/// QEMU's entities need four (an object, its `members`, a member, its `features`); the
/// margin leaves room for what later versions add.
pub const MAX_ENTITY_NESTING: usize = 32;

/// How deeply `value` nests arrays and objects (a scalar is 0), found without recursing and
/// without looking further than `limit + 1` levels.
fn nesting(value: &Value, limit: usize) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth);
        if depth <= limit {
            stack.extend(children.map(|child| (child, depth + 1)));
        }
    }
    deepest
}

/// The width and signedness of a QAPI integer type. Introspection folds them all into `int`,
/// so only schemas made by [`crate::SchemaBuilder`] know them; validation then checks ranges
/// with QEMU's texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntKind {
    /// `int` / `int64`.
    Int64,
    /// `int8`.
    Int8,
    /// `int16`.
    Int16,
    /// `int32`.
    Int32,
    /// `uint8`.
    Uint8,
    /// `uint16`.
    Uint16,
    /// `uint32`.
    Uint32,
    /// `uint64`.
    Uint64,
    /// `size` (a `uint64` that HMP and the command line accept with suffixes).
    Size,
}

/// What the builder knows beyond the wire format: real type names and integer widths.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hints {
    /// Entity index -> the type's real (unmasked) name.
    pub(crate) real_names: HashMap<usize, String>,
    /// (object entity index, member name) -> integer width of the member (or its elements).
    pub(crate) int_kinds: HashMap<(usize, String), IntKind>,
}

/// The resolved references of one entity, parallel to `Schema::infos`.
#[derive(Clone, Debug)]
enum Node {
    Leaf,
    Array { element: usize },
    Object { members: Vec<usize>, variants: Vec<usize> },
    Alternate { members: Vec<usize> },
    Command { arg: usize, ret: usize },
    Event { arg: usize },
}

/// A loaded `query-qmp-schema`: every entity, looked up by name, with references resolved.
///
/// Load it with [`Schema::from_value`] or [`Schema::from_json_slice`], then look up
/// [`Schema::command`], [`Schema::event`] or [`Schema::type_`]. The [crate documentation](crate)
/// loads one and validates, renders and completes a command with it, as a runnable example.
#[derive(Clone, Debug)]
pub struct Schema {
    infos: Vec<SchemaInfo>,
    nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
    commands: Vec<usize>,
    events: Vec<usize>,
    pub(crate) hints: Hints,
}

impl Schema {
    /// Loads a schema from the `return` array of `query-qmp-schema`. As a convenience, the
    /// whole reply object (`{"return": [...]}`) is accepted too.
    ///
    /// # Errors
    /// [`SchemaError::NotAnArray`] for any other shape, [`SchemaError::Json`] for a malformed
    /// entity, [`SchemaError::TooDeep`] for one nested deeper than [`MAX_ENTITY_NESTING`],
    /// and the resolution errors of [`Schema::from_infos`].
    pub fn from_value(value: Value) -> Result<Self, SchemaError> {
        let array = match value {
            Value::Array(array) => array,
            Value::Object(mut reply) => match reply.remove("return") {
                Some(Value::Array(array)) => array,
                _ => return Err(SchemaError::NotAnArray),
            },
            _ => return Err(SchemaError::NotAnArray),
        };
        let mut infos = Vec::with_capacity(array.len());
        for entity in array {
            // Reading an entity into its typed form recurses once per level of nesting, and a
            // peer's reply may nest up to QEMU's 1024 levels: refuse before recursing.
            if nesting(&entity, MAX_ENTITY_NESTING) > MAX_ENTITY_NESTING {
                let name = entity.get("name").and_then(Value::as_str).unwrap_or_default();
                return Err(SchemaError::TooDeep(name.to_owned()));
            }
            infos.push(serde_json::from_value(entity)?);
        }
        Self::from_infos(infos)
    }

    /// Loads a schema from JSON text, as [`Schema::from_value`] does.
    ///
    /// # Errors
    /// [`SchemaError::Json`] when the text is not JSON, else as [`Schema::from_value`].
    pub fn from_json_slice(json: &[u8]) -> Result<Self, SchemaError> {
        Self::from_value(serde_json::from_slice(json)?)
    }

    /// Indexes already parsed entities and resolves their type references.
    ///
    /// # Errors
    /// [`SchemaError::DuplicateName`] when two entities share a name,
    /// [`SchemaError::UnknownType`] when a reference names nothing, and
    /// [`SchemaError::NotAType`] when it names a command or an event.
    pub fn from_infos(infos: Vec<SchemaInfo>) -> Result<Self, SchemaError> {
        let mut by_name = HashMap::with_capacity(infos.len());
        for (index, info) in infos.iter().enumerate() {
            if by_name.insert(info.name().to_owned(), index).is_some() {
                return Err(SchemaError::DuplicateName(info.name().to_owned()));
            }
        }
        let resolve = |entity: &str, type_name: &str| -> Result<usize, SchemaError> {
            let index = *by_name.get(type_name).ok_or_else(|| SchemaError::UnknownType {
                entity: entity.to_owned(),
                type_name: type_name.to_owned(),
            })?;
            if infos[index].is_type() {
                Ok(index)
            } else {
                Err(SchemaError::NotAType { entity: entity.to_owned(), type_name: type_name.to_owned() })
            }
        };
        let mut nodes = Vec::with_capacity(infos.len());
        let (mut commands, mut events) = (Vec::new(), Vec::new());
        for (index, info) in infos.iter().enumerate() {
            let name = info.name();
            let node = match info {
                SchemaInfo::Builtin(_) | SchemaInfo::Enum(_) | SchemaInfo::Other(_) => Node::Leaf,
                SchemaInfo::Array(a) => Node::Array { element: resolve(name, &a.element_type)? },
                SchemaInfo::Object(o) => Node::Object {
                    members: o.members.iter().map(|m| resolve(name, &m.type_)).collect::<Result<_, _>>()?,
                    variants: o.variants.iter().map(|v| resolve(name, &v.type_)).collect::<Result<_, _>>()?,
                },
                SchemaInfo::Alternate(a) => Node::Alternate {
                    members: a.members.iter().map(|m| resolve(name, &m.type_)).collect::<Result<_, _>>()?,
                },
                SchemaInfo::Command(c) => {
                    commands.push(index);
                    Node::Command { arg: resolve(name, &c.arg_type)?, ret: resolve(name, &c.ret_type)? }
                }
                SchemaInfo::Event(e) => {
                    events.push(index);
                    Node::Event { arg: resolve(name, &e.arg_type)? }
                }
            };
            nodes.push(node);
        }
        Ok(Schema { infos, nodes, by_name, commands, events, hints: Hints::default() })
    }

    /// Every entity, in the order loaded; serialize this slice to answer `query-qmp-schema`.
    #[must_use]
    pub fn infos(&self) -> &[SchemaInfo] {
        &self.infos
    }

    /// The schema as the JSON array QEMU sends.
    #[must_use]
    pub fn to_value(&self) -> Value {
        serde_json::to_value(&self.infos).unwrap_or(Value::Null)
    }

    /// The number of entities (commands, events and types).
    #[must_use]
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    /// Whether the schema has no entities at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// Looks a command up by its (real) name.
    #[must_use]
    pub fn command(&self, name: &str) -> Option<Command<'_>> {
        let index = *self.by_name.get(name)?;
        matches!(self.nodes[index], Node::Command { .. }).then_some(Command { schema: self, index })
    }

    /// Looks an event up by its (real) name.
    #[must_use]
    pub fn event(&self, name: &str) -> Option<Event<'_>> {
        let index = *self.by_name.get(name)?;
        matches!(self.nodes[index], Node::Event { .. }).then_some(Event { schema: self, index })
    }

    /// Looks a type up by its name as it appears in the schema (masked, such as `"12"`, or
    /// a builtin or array name such as `str` or `[int]`).
    #[must_use]
    pub fn type_(&self, name: &str) -> Option<Type<'_>> {
        let index = *self.by_name.get(name)?;
        self.infos[index].is_type().then_some(Type { schema: self, index })
    }

    /// The commands, in schema order.
    pub fn commands(&self) -> impl ExactSizeIterator<Item = Command<'_>> + '_ {
        self.commands.iter().map(move |&index| Command { schema: self, index })
    }

    /// The events, in schema order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = Event<'_>> + '_ {
        self.events.iter().map(move |&index| Event { schema: self, index })
    }

    /// The types (every entity that is not a command or an event), in schema order.
    pub fn types(&self) -> impl Iterator<Item = Type<'_>> + '_ {
        (0..self.infos.len())
            .filter(move |&index| self.infos[index].is_type())
            .map(move |index| Type { schema: self, index })
    }

    /// The commands that may be sent with `exec-oob` (`allow-oob: true`).
    pub fn commands_allowing_oob(&self) -> impl Iterator<Item = Command<'_>> + '_ {
        self.commands().filter(Command::allow_oob)
    }

    pub(crate) fn type_at(&self, index: usize) -> Type<'_> {
        Type { schema: self, index }
    }
}

/// A command of a [`Schema`].
#[derive(Clone, Copy, Debug)]
pub struct Command<'a> {
    pub(crate) schema: &'a Schema,
    index: usize,
}

impl<'a> Command<'a> {
    /// The command's entity as sent by QEMU.
    #[must_use]
    pub fn info(&self) -> &'a SchemaInfoCommand {
        match &self.schema.infos[self.index] {
            SchemaInfo::Command(c) => c,
            _ => unreachable!("a Command view always points at a command"),
        }
    }

    /// The command's name.
    #[must_use]
    pub fn name(&self) -> &'a str {
        &self.info().name
    }

    /// The type of its `arguments` object (the empty object type when it takes none).
    #[must_use]
    pub fn arg_type(&self) -> Type<'a> {
        match self.schema.nodes[self.index] {
            Node::Command { arg, .. } => self.schema.type_at(arg),
            _ => unreachable!("a Command view always points at a command"),
        }
    }

    /// The type of its `return` value.
    #[must_use]
    pub fn ret_type(&self) -> Type<'a> {
        match self.schema.nodes[self.index] {
            Node::Command { ret, .. } => self.schema.type_at(ret),
            _ => unreachable!("a Command view always points at a command"),
        }
    }

    /// Whether `exec-oob` may run it.
    #[must_use]
    pub fn allow_oob(&self) -> bool {
        self.info().allow_oob
    }

    /// Its feature flags, such as `deprecated`.
    #[must_use]
    pub fn features(&self) -> &'a [String] {
        &self.info().features
    }
}

/// An event of a [`Schema`].
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    pub(crate) schema: &'a Schema,
    index: usize,
}

impl<'a> Event<'a> {
    /// The event's entity as sent by QEMU.
    #[must_use]
    pub fn info(&self) -> &'a SchemaInfoEvent {
        match &self.schema.infos[self.index] {
            SchemaInfo::Event(e) => e,
            _ => unreachable!("an Event view always points at an event"),
        }
    }

    /// The event's name.
    #[must_use]
    pub fn name(&self) -> &'a str {
        &self.info().name
    }

    /// The type of its `data` object (the empty object type when it has none).
    #[must_use]
    pub fn arg_type(&self) -> Type<'a> {
        match self.schema.nodes[self.index] {
            Node::Event { arg } => self.schema.type_at(arg),
            _ => unreachable!("an Event view always points at an event"),
        }
    }

    /// Its feature flags.
    #[must_use]
    pub fn features(&self) -> &'a [String] {
        &self.info().features
    }
}

/// A type of a [`Schema`]; [`Type::kind`] says what it is.
#[derive(Clone, Copy, Debug)]
pub struct Type<'a> {
    pub(crate) schema: &'a Schema,
    pub(crate) index: usize,
}

impl PartialEq for Type<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.schema, other.schema) && self.index == other.index
    }
}

/// What a [`Type`] is, with the resolved parts needed to walk it.
#[derive(Clone, Copy, Debug)]
pub enum TypeKind<'a> {
    /// A builtin, with the JSON values it accepts.
    Builtin(&'a JsonType),
    /// An enum.
    Enum(EnumType<'a>),
    /// An array, with its element type.
    Array(Type<'a>),
    /// An object or flat union.
    Object(ObjectType<'a>),
    /// An alternate.
    Alternate(AlternateType<'a>),
    /// A meta-type this crate does not know; validation accepts any value for it.
    Other,
}

impl<'a> Type<'a> {
    /// The type's name as in the schema (masked for enums, objects and alternates).
    #[must_use]
    pub fn name(&self) -> &'a str {
        self.schema.infos[self.index].name()
    }

    /// The type's real name, when the schema was made by [`crate::SchemaBuilder`]; `None`
    /// for schemas loaded from QEMU, whose names are masked.
    #[must_use]
    pub fn real_name(&self) -> Option<&'a str> {
        self.schema.hints.real_names.get(&self.index).map(String::as_str)
    }

    /// The entity as sent by QEMU.
    #[must_use]
    pub fn info(&self) -> &'a SchemaInfo {
        &self.schema.infos[self.index]
    }

    /// The meta-type.
    #[must_use]
    pub fn meta_type(&self) -> MetaType {
        self.info().meta_type()
    }

    /// What the type is.
    #[must_use]
    pub fn kind(&self) -> TypeKind<'a> {
        let schema = self.schema;
        match (&schema.infos[self.index], &schema.nodes[self.index]) {
            (SchemaInfo::Builtin(b), _) => TypeKind::Builtin(&b.json_type),
            (SchemaInfo::Enum(info), _) => TypeKind::Enum(EnumType { info }),
            (SchemaInfo::Array(_), Node::Array { element }) => TypeKind::Array(schema.type_at(*element)),
            (SchemaInfo::Object(info), Node::Object { members, variants }) => {
                TypeKind::Object(ObjectType { schema, index: self.index, info, members, variants })
            }
            (SchemaInfo::Alternate(info), Node::Alternate { members }) => {
                TypeKind::Alternate(AlternateType { schema, info, members })
            }
            _ => TypeKind::Other,
        }
    }

    /// The object view, when the type is an object.
    #[must_use]
    pub fn as_object(&self) -> Option<ObjectType<'a>> {
        match self.kind() {
            TypeKind::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The enum view, when the type is an enum.
    #[must_use]
    pub fn as_enum(&self) -> Option<EnumType<'a>> {
        match self.kind() {
            TypeKind::Enum(e) => Some(e),
            _ => None,
        }
    }
}

/// An enum type.
#[derive(Clone, Copy, Debug)]
pub struct EnumType<'a> {
    info: &'a SchemaInfoEnum,
}

impl<'a> EnumType<'a> {
    /// The values, from `members` or, for QEMUs before 6.2, `values`.
    pub fn values(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.info.value_names()
    }

    /// The values with their features (empty for QEMUs before 6.2).
    #[must_use]
    pub fn members(&self) -> &'a [SchemaInfoEnumMember] {
        self.info.members.as_deref().unwrap_or_default()
    }

    /// Whether `value` is one of the values.
    #[must_use]
    pub fn contains(&self, value: &str) -> bool {
        self.info.value_names().any(|v| v == value)
    }

    /// The number of values.
    #[must_use]
    pub fn len(&self) -> usize {
        self.info.value_names().count()
    }

    /// Whether the enum has no values.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An object type, possibly a flat union.
#[derive(Clone, Copy, Debug)]
pub struct ObjectType<'a> {
    schema: &'a Schema,
    pub(crate) index: usize,
    info: &'a SchemaInfoObject,
    members: &'a [usize],
    variants: &'a [usize],
}

/// A member of an [`ObjectType`].
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    info: &'a SchemaInfoObjectMember,
    ty: Type<'a>,
    owner: usize,
}

impl<'a> Member<'a> {
    /// The member's JSON key.
    #[must_use]
    pub fn name(&self) -> &'a str {
        &self.info.name
    }

    /// The member's type.
    #[must_use]
    pub fn ty(&self) -> Type<'a> {
        self.ty
    }

    /// Whether the member may be left out.
    #[must_use]
    pub fn optional(&self) -> bool {
        self.info.is_optional()
    }

    /// Its feature flags, such as `deprecated`.
    #[must_use]
    pub fn features(&self) -> &'a [String] {
        &self.info.features
    }

    /// The member as sent by QEMU.
    #[must_use]
    pub fn info(&self) -> &'a SchemaInfoObjectMember {
        self.info
    }

    /// The integer width known for this member (builder-made schemas only).
    #[must_use]
    pub fn int_kind(&self) -> Option<IntKind> {
        self.ty.schema.hints.int_kinds.get(&(self.owner, self.info.name.clone())).copied()
    }
}

impl<'a> ObjectType<'a> {
    /// The members, in the order QEMU visits them (base members first).
    pub fn members(&self) -> impl ExactSizeIterator<Item = Member<'a>> + 'a {
        let (schema, owner) = (self.schema, self.index);
        self.info.members.iter().zip(self.members).map(move |(info, &ty)| Member {
            info,
            ty: schema.type_at(ty),
            owner,
        })
    }

    /// The member at `position` in [`ObjectType::members`], without walking those before it.
    pub(crate) fn member_at(&self, position: usize) -> Option<Member<'a>> {
        let (info, &ty) = (self.info.members.get(position)?, self.members.get(position)?);
        Some(Member { info, ty: self.schema.type_at(ty), owner: self.index })
    }

    /// The member named `name`, if any (variant members not included).
    #[must_use]
    pub fn member(&self, name: &str) -> Option<Member<'a>> {
        self.members().find(|m| m.name() == name)
    }

    /// For a flat union, the name of the tag member.
    #[must_use]
    pub fn tag(&self) -> Option<&'a str> {
        self.info.tag.as_deref()
    }

    /// For a flat union, the variants as (tag value, type).
    pub fn variants(&self) -> impl ExactSizeIterator<Item = (&'a str, Type<'a>)> + 'a {
        let schema = self.schema;
        self.info.variants.iter().zip(self.variants).map(move |(v, &ty)| (v.case.as_str(), schema.type_at(ty)))
    }

    /// The variant type selected by tag value `case`, if the union has one.
    #[must_use]
    pub fn variant(&self, case: &str) -> Option<Type<'a>> {
        self.variants().find(|(c, _)| *c == case).map(|(_, ty)| ty)
    }

    /// The object as a [`Type`].
    #[must_use]
    pub fn as_type(&self) -> Type<'a> {
        self.schema.type_at(self.index)
    }
}

/// An alternate type.
#[derive(Clone, Copy, Debug)]
pub struct AlternateType<'a> {
    schema: &'a Schema,
    info: &'a SchemaInfoAlternate,
    members: &'a [usize],
}

impl<'a> AlternateType<'a> {
    /// The branch types, in schema order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = Type<'a>> + 'a {
        let schema = self.schema;
        self.members.iter().map(move |&ty| schema.type_at(ty))
    }

    /// The alternate as sent by QEMU.
    #[must_use]
    pub fn info(&self) -> &'a SchemaInfoAlternate {
        self.info
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A small schema in QEMU's format (`tests/data/fixture.json`), modelled on the real 7.2
    /// entities it names (same masked names and members), plus a few made-up ones
    /// (`set-numbers`, the `hologram` meta-type) for the remaining builtins.
    pub(crate) fn fixture() -> Schema {
        Schema::from_json_slice(include_bytes!("../tests/data/fixture.json")).expect("the fixture loads")
    }

    /// Loads `input` and compares the outcome (`ok: <commands>/<events>/<types>` or the error
    /// text) with `expected`.
    fn check(input: Value, expected: &str) {
        let got = match Schema::from_value(input) {
            Ok(s) => format!("ok: {}/{}/{}", s.commands().len(), s.events().len(), s.types().count()),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn loading() {
        check(json!([]), "ok: 0/0/0");
        check(
            json!({"return": [{"name": "stop", "meta-type": "command", "arg-type": "0", "ret-type": "0"}, {"name": "0", "meta-type": "object", "members": []}]}),
            "ok: 1/0/1",
        );
        check(
            json!({"error": {}}),
            "a schema is a JSON array of SchemaInfo objects (the `return` of query-qmp-schema)",
        );
        check(json!(42), "a schema is a JSON array of SchemaInfo objects (the `return` of query-qmp-schema)");
        check(
            json!([{"name": "stop", "meta-type": "command", "arg-type": "0", "ret-type": "0"}]),
            "'stop' references type '0', which the schema does not define",
        );
        check(
            json!([{"name": "stop", "meta-type": "command", "arg-type": "STOP", "ret-type": "STOP"}, {"name": "STOP", "meta-type": "event", "arg-type": "0"}, {"name": "0", "meta-type": "object", "members": []}]),
            "'stop' references 'STOP', which is a command or an event, not a type",
        );
        check(
            json!([{"name": "0", "meta-type": "object", "members": []}, {"name": "0", "meta-type": "enum", "values": []}]),
            "two schema entities are named '0'",
        );
        check(
            json!([{"name": "0", "meta-type": "object", "members": [{"name": "a"}]}]),
            "invalid schema JSON: missing field `type`",
        );
        check(json!([{"name": "x", "meta-type": "nova", "whatever": [1]}]), "ok: 0/0/1");
    }

    /// An entity nested deeper than any QEMU's is refused before it is read, which would
    /// recurse once per level: here on a small stack, with a peer's 1000 levels.
    #[test]
    fn deeply_nested_entities_are_refused() {
        let entity = |levels: usize| {
            let mut default = Value::Array(Vec::new());
            for _ in 0..levels {
                default = Value::Array(vec![default]);
            }
            let mut member = serde_json::Map::new();
            member.insert("name".into(), json!("a"));
            member.insert("type".into(), json!("str"));
            member.insert("default".into(), default);
            let mut object = serde_json::Map::new();
            object.insert("name".into(), json!("o"));
            object.insert("meta-type".into(), json!("object"));
            object.insert("members".into(), Value::Array(vec![Value::Object(member)]));
            Value::Array(vec![
                Value::Object(object),
                json!({"name": "str", "meta-type": "builtin", "json-type": "string"}),
            ])
        };
        let verdicts = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                // The object, `members`, the member and `default`'s own array are 4 levels.
                let fits = Schema::from_value(entity(MAX_ENTITY_NESTING - 4)).map(|s| s.len());
                let deep = Schema::from_value(entity(MAX_ENTITY_NESTING - 3)).map(|s| s.len());
                let absurd = Schema::from_value(entity(1000)).map(|s| s.len());
                (fits.map_err(|e| e.to_string()), deep.map_err(|e| e.to_string()), absurd.map_err(|e| e.to_string()))
            })
            .unwrap()
            .join()
            .unwrap();
        let refused = "schema entity 'o' nests arrays and objects more than 32 levels deep".to_owned();
        assert_eq!(verdicts, (Ok(2), Err(refused.clone()), Err(refused)));
        assert_eq!(nesting(&json!(1), 8), 0);
        assert_eq!(nesting(&json!({"a": [1, {"b": []}], "c": {}}), 8), 4);
    }

    #[test]
    fn from_json_slice_reports_bad_json() {
        assert!(matches!(Schema::from_json_slice(b"[{"), Err(SchemaError::Json(_))));
        let schema = Schema::from_json_slice(br#"[{"name":"int","meta-type":"builtin","json-type":"int"}]"#).unwrap();
        assert_eq!(schema.len(), 1);
        assert!(!schema.is_empty());
    }

    #[test]
    fn lookups_walk_the_graph() {
        let schema = fixture();
        let hmc = schema.command("human-monitor-command").unwrap();
        assert_eq!(hmc.ret_type().name(), "str");
        assert_eq!(hmc.features(), ["savevm-monitor-nodes"]);
        let args = hmc.arg_type().as_object().unwrap();
        let members: Vec<_> = args.members().map(|m| (m.name(), m.ty().name(), m.optional())).collect();
        assert_eq!(members, [("command-line", "str", false), ("cpu-index", "int", true)]);
        assert!(schema.command("STOP").is_none());
        assert!(schema.event("query-status").is_none());
        assert!(schema.type_("query-status").is_none());
        assert!(schema.command("no-such-command").is_none());
        assert_eq!(schema.event("RESET").unwrap().arg_type().as_object().unwrap().members().len(), 2);
        let reason = schema.event("RESET").unwrap().arg_type().as_object().unwrap().member("reason").unwrap();
        assert!(reason.ty().as_enum().unwrap().contains("host-qmp-quit"));
        assert_eq!(reason.ty().as_enum().unwrap().len(), 10);
        assert_eq!(schema.commands_allowing_oob().map(|c| c.name()).collect::<Vec<_>>(), ["query-yank"]);
        let union = schema.command("blockdev-add").unwrap().arg_type().as_object().unwrap();
        assert_eq!(union.tag(), Some("driver"));
        assert_eq!(union.variant("file").unwrap().name(), "301");
        assert_eq!(union.variants().len(), 4);
        let caps = schema.command("qmp_capabilities").unwrap().arg_type().as_object().unwrap();
        let TypeKind::Array(element) = caps.member("enable").unwrap().ty().kind() else { panic!() };
        assert_eq!(element.as_enum().unwrap().values().collect::<Vec<_>>(), ["oob"]);
        assert!(matches!(schema.type_("9999").unwrap().kind(), TypeKind::Other));
        assert_eq!(schema.type_("9999").unwrap().meta_type(), MetaType::Other("hologram".into()));
        assert!(schema.type_("0").unwrap().real_name().is_none());
        assert_eq!(schema.events().map(|e| e.name()).collect::<Vec<_>>(), ["STOP", "RESET"]);
    }

    #[test]
    fn round_trips_to_the_same_json() {
        let schema = fixture();
        let again = Schema::from_value(schema.to_value()).unwrap();
        assert_eq!(again.infos(), schema.infos());
    }
}
