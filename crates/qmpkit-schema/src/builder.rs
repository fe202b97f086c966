//! [`SchemaBuilder`]: a server describes its commands, events and types with a small Rust
//! model and gets the `query-qmp-schema` reply in QEMU's format, plus a [`Schema`] to
//! validate requests with.
//!
//! The output follows QEMU's `scripts/qapi/introspect.py`:
//!
//! * commands and events come first, in registration order, then every type they use, in the
//!   order of first use (types that nothing uses are left out);
//! * object, enum and alternate names are masked as decimal strings, `"0"`, `"1"`, ..., in
//!   the order of first use; builtins keep their names and arrays are named `[element]`;
//! * every integer type is folded into `int`, and arrays of them into `[int]`;
//! * a command without arguments or without a return value, and an event without data,
//!   reference one shared empty object type, as QEMU's `q_empty`;
//! * optional members carry `"default": null`; `allow-oob` is written only when true;
//! * a flat union lists a variant for every tag value, the ones not given with the empty
//!   object type, after the given ones.
//!
//! Key order inside each entity is `name`, `meta-type`, then the rest (QEMU's order is that
//! of a hash table, which no client may rely on).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::index::{Hints, IntKind, Schema, SchemaError};

/// QAPI's builtin types. The integer types differ only in range, which introspection hides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `str`: a JSON string.
    Str,
    /// `int`: a 64-bit signed integer.
    Int,
    /// `int8`.
    Int8,
    /// `int16`.
    Int16,
    /// `int32`.
    Int32,
    /// `int64` (the same as `int`).
    Int64,
    /// `uint8`.
    Uint8,
    /// `uint16`.
    Uint16,
    /// `uint32`.
    Uint32,
    /// `uint64`.
    Uint64,
    /// `size`: a byte count (a `uint64`).
    Size,
    /// `number`: any JSON number.
    Number,
    /// `bool`.
    Bool,
    /// `null`: only JSON `null`.
    Null,
    /// `any`: any JSON value.
    Any,
}

impl Builtin {
    /// The QAPI spelling, such as `uint8`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Str => "str",
            Builtin::Int => "int",
            Builtin::Int8 => "int8",
            Builtin::Int16 => "int16",
            Builtin::Int32 => "int32",
            Builtin::Int64 => "int64",
            Builtin::Uint8 => "uint8",
            Builtin::Uint16 => "uint16",
            Builtin::Uint32 => "uint32",
            Builtin::Uint64 => "uint64",
            Builtin::Size => "size",
            Builtin::Number => "number",
            Builtin::Bool => "bool",
            Builtin::Null => "null",
            Builtin::Any => "any",
        }
    }

    /// Parses the QAPI spelling.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        const ALL: [Builtin; 15] = [
            Builtin::Str,
            Builtin::Int,
            Builtin::Int8,
            Builtin::Int16,
            Builtin::Int32,
            Builtin::Int64,
            Builtin::Uint8,
            Builtin::Uint16,
            Builtin::Uint32,
            Builtin::Uint64,
            Builtin::Size,
            Builtin::Number,
            Builtin::Bool,
            Builtin::Null,
            Builtin::Any,
        ];
        ALL.into_iter().find(|b| b.name() == name)
    }

    /// The integer width, for the integer types.
    fn int_kind(self) -> Option<IntKind> {
        Some(match self {
            Builtin::Int | Builtin::Int64 => IntKind::Int64,
            Builtin::Int8 => IntKind::Int8,
            Builtin::Int16 => IntKind::Int16,
            Builtin::Int32 => IntKind::Int32,
            Builtin::Uint8 => IntKind::Uint8,
            Builtin::Uint16 => IntKind::Uint16,
            Builtin::Uint32 => IntKind::Uint32,
            Builtin::Uint64 => IntKind::Uint64,
            Builtin::Size => IntKind::Size,
            _ => return None,
        })
    }

    /// The builtin introspection shows: integer types fold into `int`.
    fn folded(self) -> Self {
        if self.int_kind().is_some() { Builtin::Int } else { self }
    }

    fn json_type(self) -> &'static str {
        match self.folded() {
            Builtin::Str => "string",
            Builtin::Int => "int",
            Builtin::Number => "number",
            Builtin::Bool => "boolean",
            Builtin::Null => "null",
            _ => "value",
        }
    }
}

/// A reference to a type: a builtin, a type defined on the builder by name, or an array.
///
/// `From<&str>` reads QAPI spellings: builtin names (`"str"`, `"uint8"`, ...) become
/// builtins, anything else names a defined type. [`TypeRef::array`] makes `['T']`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TypeRef {
    /// A builtin type.
    Builtin(Builtin),
    /// A type defined with [`SchemaBuilder::type_`], by its real name.
    Named(String),
    /// An array of the inner type.
    Array(Box<TypeRef>),
}

impl TypeRef {
    /// A reference to a defined type by name, even one spelled like a builtin.
    pub fn named(name: impl Into<String>) -> Self {
        TypeRef::Named(name.into())
    }

    /// An array of `element`.
    pub fn array(element: impl Into<TypeRef>) -> Self {
        TypeRef::Array(Box::new(element.into()))
    }

    /// The integer width of the reference or of its array elements.
    fn int_kind(&self) -> Option<IntKind> {
        match self {
            TypeRef::Builtin(b) => b.int_kind(),
            TypeRef::Array(inner) => inner.int_kind(),
            TypeRef::Named(_) => None,
        }
    }
}

impl From<Builtin> for TypeRef {
    fn from(builtin: Builtin) -> Self {
        TypeRef::Builtin(builtin)
    }
}

impl From<&str> for TypeRef {
    fn from(name: &str) -> Self {
        Builtin::parse(name).map_or_else(|| TypeRef::Named(name.to_owned()), TypeRef::Builtin)
    }
}

impl From<String> for TypeRef {
    fn from(name: String) -> Self {
        TypeRef::from(name.as_str())
    }
}

/// A member of an object type or of a command's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDef {
    /// The JSON key.
    pub name: String,
    /// The type.
    pub ty: TypeRef,
    /// Whether it may be left out (introspection: `"default": null`).
    pub optional: bool,
    /// Feature flags, such as `deprecated`.
    pub features: Vec<String>,
}

impl MemberDef {
    /// A mandatory member.
    pub fn new(name: impl Into<String>, ty: impl Into<TypeRef>) -> Self {
        MemberDef { name: name.into(), ty: ty.into(), optional: false, features: Vec::new() }
    }

    /// An optional member.
    pub fn optional(name: impl Into<String>, ty: impl Into<TypeRef>) -> Self {
        MemberDef { optional: true, ..MemberDef::new(name, ty) }
    }

    /// Adds a feature flag.
    #[must_use]
    pub fn feature(mut self, feature: impl Into<String>) -> Self {
        self.features.push(feature.into());
        self
    }
}

/// An enum type.
#[derive(Clone, Debug, PartialEq)]
pub struct EnumDef {
    /// The real name (masked in the output).
    pub name: String,
    /// The values with their feature flags.
    pub values: Vec<(String, Vec<String>)>,
    /// Feature flags of the type.
    pub features: Vec<String>,
}

impl EnumDef {
    /// An enum with `values`, in order.
    pub fn new<S: Into<String>>(name: impl Into<String>, values: impl IntoIterator<Item = S>) -> Self {
        EnumDef {
            name: name.into(),
            values: values.into_iter().map(|v| (v.into(), Vec::new())).collect(),
            features: Vec::new(),
        }
    }

    /// Adds a feature flag to the value `value` (for example `deprecated`).
    #[must_use]
    pub fn value_feature(mut self, value: &str, feature: impl Into<String>) -> Self {
        if let Some((_, features)) = self.values.iter_mut().find(|(v, _)| v == value) {
            features.push(feature.into());
        }
        self
    }
}

/// An object type, a flat union when [`ObjectDef::union`] is used.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectDef {
    /// The real name (masked in the output).
    pub name: String,
    /// The members (for a union: the base members, including the tag).
    pub members: Vec<MemberDef>,
    /// For a flat union: the tag member's name and the (tag value, object type name) pairs.
    pub union: Option<(String, Vec<(String, String)>)>,
    /// Feature flags of the type.
    pub features: Vec<String>,
}

impl ObjectDef {
    /// An object with no members yet.
    pub fn new(name: impl Into<String>) -> Self {
        ObjectDef { name: name.into(), members: Vec::new(), union: None, features: Vec::new() }
    }

    /// Adds a member.
    #[must_use]
    pub fn member(mut self, member: MemberDef) -> Self {
        self.members.push(member);
        self
    }

    /// Makes the object a flat union: member `tag` (an enum) selects which object type's
    /// members are added, as (tag value, object type name) pairs.
    #[must_use]
    pub fn union<C: Into<String>, T: Into<String>>(
        mut self,
        tag: impl Into<String>,
        variants: impl IntoIterator<Item = (C, T)>,
    ) -> Self {
        let variants = variants.into_iter().map(|(c, t)| (c.into(), t.into())).collect();
        self.union = Some((tag.into(), variants));
        self
    }

    /// Adds a feature flag.
    #[must_use]
    pub fn feature(mut self, feature: impl Into<String>) -> Self {
        self.features.push(feature.into());
        self
    }
}

/// An alternate type: the JSON type of a value picks one of the branches.
#[derive(Clone, Debug, PartialEq)]
pub struct AlternateDef {
    /// The real name (masked in the output, but used in the error text for a value no
    /// branch accepts).
    pub name: String,
    /// The branches; at most one per JSON type.
    pub branches: Vec<TypeRef>,
    /// Feature flags of the type.
    pub features: Vec<String>,
}

impl AlternateDef {
    /// An alternate of `branches`.
    pub fn new<T: Into<TypeRef>>(name: impl Into<String>, branches: impl IntoIterator<Item = T>) -> Self {
        AlternateDef {
            name: name.into(),
            branches: branches.into_iter().map(Into::into).collect(),
            features: Vec::new(),
        }
    }
}

/// A named type definition.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeDef {
    /// An enum.
    Enum(EnumDef),
    /// An object or flat union.
    Object(ObjectDef),
    /// An alternate.
    Alternate(AlternateDef),
}

impl TypeDef {
    /// The real name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            TypeDef::Enum(d) => &d.name,
            TypeDef::Object(d) => &d.name,
            TypeDef::Alternate(d) => &d.name,
        }
    }
}

impl From<EnumDef> for TypeDef {
    fn from(def: EnumDef) -> Self {
        TypeDef::Enum(def)
    }
}

impl From<ObjectDef> for TypeDef {
    fn from(def: ObjectDef) -> Self {
        TypeDef::Object(def)
    }
}

impl From<AlternateDef> for TypeDef {
    fn from(def: AlternateDef) -> Self {
        TypeDef::Alternate(def)
    }
}

/// The argument object of a command or the data object of an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Args {
    /// No members: the shared empty object type.
    None,
    /// Members listed with the command (QAPI's implicit `q_obj_<name>-arg` type).
    Members(Vec<MemberDef>),
    /// A defined object type, by name (QAPI's `'data': 'Type'`, or `'boxed': true`).
    Type(String),
}

/// A command.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandDef {
    /// The real name.
    pub name: String,
    /// The arguments.
    pub args: Args,
    /// The return type; `None` returns `{}` (the empty object type).
    pub ret: Option<TypeRef>,
    /// Whether `exec-oob` may run it.
    pub allow_oob: bool,
    /// Feature flags.
    pub features: Vec<String>,
}

impl CommandDef {
    /// A command without arguments that returns `{}`.
    pub fn new(name: impl Into<String>) -> Self {
        CommandDef { name: name.into(), args: Args::None, ret: None, allow_oob: false, features: Vec::new() }
    }

    /// Adds an argument (after any added before).
    #[must_use]
    pub fn arg(mut self, member: MemberDef) -> Self {
        match &mut self.args {
            Args::Members(members) => members.push(member),
            _ => self.args = Args::Members(vec![member]),
        }
        self
    }

    /// Takes its arguments from the object type `name` instead.
    #[must_use]
    pub fn arg_type(mut self, name: impl Into<String>) -> Self {
        self.args = Args::Type(name.into());
        self
    }

    /// Sets the return type.
    #[must_use]
    pub fn returns(mut self, ty: impl Into<TypeRef>) -> Self {
        self.ret = Some(ty.into());
        self
    }

    /// Allows `exec-oob`.
    #[must_use]
    pub fn allow_oob(mut self) -> Self {
        self.allow_oob = true;
        self
    }

    /// Adds a feature flag.
    #[must_use]
    pub fn feature(mut self, feature: impl Into<String>) -> Self {
        self.features.push(feature.into());
        self
    }
}

/// An event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventDef {
    /// The real name.
    pub name: String,
    /// The members of its `data`.
    pub data: Args,
    /// Feature flags.
    pub features: Vec<String>,
}

impl EventDef {
    /// An event without data.
    pub fn new(name: impl Into<String>) -> Self {
        EventDef { name: name.into(), data: Args::None, features: Vec::new() }
    }

    /// Adds a data member.
    #[must_use]
    pub fn member(mut self, member: MemberDef) -> Self {
        match &mut self.data {
            Args::Members(members) => members.push(member),
            _ => self.data = Args::Members(vec![member]),
        }
        self
    }

    /// Takes its data members from the object type `name` instead.
    #[must_use]
    pub fn data_type(mut self, name: impl Into<String>) -> Self {
        self.data = Args::Type(name.into());
        self
    }
}

/// Why [`SchemaBuilder::build`] refused the registered definitions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two commands, events or types share a name.
    #[error("'{0}' is defined twice")]
    Duplicate(String),
    /// A reference names no defined type.
    #[error("'{user}' uses type '{name}', which is not defined")]
    UnknownType {
        /// The command, event or type that uses it.
        user: String,
        /// The missing name.
        name: String,
    },
    /// A definition breaks a QAPI rule; the text says which.
    #[error("'{user}': {problem}")]
    Invalid {
        /// The offending command, event or type.
        user: String,
        /// What is wrong.
        problem: String,
    },
}

/// Collects a server's commands, events and types, and builds its `query-qmp-schema`.
///
/// ```
/// use qmpkit_schema::{CommandDef, EnumDef, MemberDef, SchemaBuilder, TypeRef};
/// use serde_json::json;
///
/// let mut builder = SchemaBuilder::new();
/// builder
///     .type_(EnumDef::new("QMPCapability", ["oob"]))
///     .command(CommandDef::new("qmp_capabilities")
///         .arg(MemberDef::optional("enable", TypeRef::array("QMPCapability"))))
///     .command(CommandDef::new("human-monitor-command")
///         .arg(MemberDef::new("command-line", "str"))
///         .arg(MemberDef::optional("cpu-index", "int"))
///         .returns("str"))
///     .command(CommandDef::new("query-yank").allow_oob());
///
/// // The reply to `query-qmp-schema`:
/// let entities = builder.build().unwrap();
/// assert_eq!(entities[0], json!({"name": "qmp_capabilities", "meta-type": "command",
///                                "arg-type": "0", "ret-type": "1"}));
///
/// // The same, loaded for validating requests before running their handlers:
/// let schema = builder.build_schema().unwrap();
/// let hmc = schema.command("human-monitor-command").unwrap();
/// let err = hmc.validate(json!({"command-line": 42}).as_object()).unwrap_err();
/// assert_eq!(err.desc(), "Invalid parameter type for 'command-line', expected: string");
/// ```
#[derive(Clone, Debug, Default)]
pub struct SchemaBuilder {
    types: Vec<TypeDef>,
    entities: Vec<Entity>,
}

#[derive(Clone, Debug)]
enum Entity {
    Command(CommandDef),
    Event(EventDef),
}

impl SchemaBuilder {
    /// An empty builder.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines a named type. Only types that some command or event uses are emitted.
    pub fn type_(&mut self, def: impl Into<TypeDef>) -> &mut Self {
        self.types.push(def.into());
        self
    }

    /// Registers a command; commands and events are emitted in registration order.
    pub fn command(&mut self, def: CommandDef) -> &mut Self {
        self.entities.push(Entity::Command(def));
        self
    }

    /// Registers an event.
    pub fn event(&mut self, def: EventDef) -> &mut Self {
        self.entities.push(Entity::Event(def));
        self
    }

    /// The `return` array of `query-qmp-schema`, in QEMU's format (see the module
    /// documentation for the rules).
    ///
    /// # Errors
    /// A [`BuildError`] when names clash, a type is not defined, or a definition breaks a
    /// QAPI rule (a union tag that is not an enum member, a variant that is not an object,
    /// an argument type that is not an object, two alternate branches of one JSON type).
    pub fn build(&self) -> Result<Vec<Value>, BuildError> {
        self.generate().map(|out| out.entities)
    }

    /// Builds and loads the schema, keeping what introspection hides (real type names and
    /// integer widths), so that validation reports integer ranges and alternate type names
    /// with QEMU's exact texts.
    ///
    /// # Errors
    /// As [`SchemaBuilder::build`].
    pub fn build_schema(&self) -> Result<Schema, BuildError> {
        let out = self.generate()?;
        let mut schema = Schema::from_value(Value::Array(out.entities))
            .map_err(|e: SchemaError| BuildError::Invalid { user: "schema".into(), problem: e.to_string() })?;
        let mut hints = Hints::default();
        for (masked, real) in out.real_names {
            if let Some(ty) = schema.type_(&masked) {
                hints.real_names.insert(ty.index, real);
            }
        }
        for ((masked, member), kind) in out.int_kinds {
            if let Some(ty) = schema.type_(&masked) {
                hints.int_kinds.insert((ty.index, member), kind);
            }
        }
        schema.hints = hints;
        Ok(schema)
    }

    fn generate(&self) -> Result<Output, BuildError> {
        let mut defs: HashMap<&str, &TypeDef> = HashMap::new();
        for def in &self.types {
            let name = def.name();
            if name.starts_with("q_") || Builtin::parse(name).is_some() {
                return Err(BuildError::Invalid { user: name.into(), problem: "the name is reserved".into() });
            }
            if defs.insert(name, def).is_some() {
                return Err(BuildError::Duplicate(name.into()));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for entity in &self.entities {
            let name = match entity {
                Entity::Command(c) => &c.name,
                Entity::Event(e) => &e.name,
            };
            if !seen.insert(name.as_str()) || defs.contains_key(name.as_str()) {
                return Err(BuildError::Duplicate(name.clone()));
            }
        }
        let mut generator = Generator { defs, used: Vec::new(), names: HashMap::new(), out: Output::default() };
        for entity in &self.entities {
            let mut obj = Map::new();
            match entity {
                Entity::Command(c) => {
                    obj.insert("name".into(), c.name.clone().into());
                    obj.insert("meta-type".into(), "command".into());
                    let arg = generator.use_args(&c.name, "arg", &c.args)?;
                    obj.insert("arg-type".into(), arg.into());
                    let ret = match &c.ret {
                        Some(ty) => generator.use_type(&c.name, ty)?,
                        None => generator.use_item(Used::Empty),
                    };
                    obj.insert("ret-type".into(), ret.into());
                    if c.allow_oob {
                        obj.insert("allow-oob".into(), true.into());
                    }
                    insert_features(&mut obj, &c.features);
                }
                Entity::Event(e) => {
                    obj.insert("name".into(), e.name.clone().into());
                    obj.insert("meta-type".into(), "event".into());
                    let arg = generator.use_args(&e.name, "arg", &e.data)?;
                    obj.insert("arg-type".into(), arg.into());
                    insert_features(&mut obj, &e.features);
                }
            }
            generator.out.entities.push(Value::Object(obj));
        }
        // The work queue grows while it is walked, as introspect.py's does.
        let mut i = 0;
        while i < generator.used.len() {
            let item = generator.used[i].clone();
            let entity = generator.emit(&item)?;
            generator.out.entities.push(entity);
            i += 1;
        }
        Ok(generator.out)
    }
}

fn insert_features(obj: &mut Map<String, Value>, features: &[String]) {
    if !features.is_empty() {
        obj.insert("features".into(), features.into());
    }
}

/// What `generate` hands back: the entities and the hints for `build_schema`.
#[derive(Default)]
struct Output {
    entities: Vec<Value>,
    /// Masked name -> real name, for alternates.
    real_names: Vec<(String, String)>,
    /// (masked object name, member) -> integer width.
    int_kinds: Vec<((String, String), IntKind)>,
}

/// A type in the work queue.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Used {
    Builtin(Builtin),
    Array(TypeRef),
    Named(String),
    /// The implicit argument object of a command or event (QAPI's `q_obj_<name>-arg`).
    Implicit(String, Vec<MemberDef>),
    /// QAPI's `q_empty`.
    Empty,
}

impl Used {
    /// The unmasked QAPI name, which keys the name map.
    fn key(&self) -> String {
        match self {
            Used::Builtin(b) => b.name().into(),
            Used::Array(element) => format!("{}List", type_key(element)),
            Used::Named(name) => name.clone(),
            Used::Implicit(name, _) => name.clone(),
            Used::Empty => "q_empty".into(),
        }
    }
}

fn type_key(ty: &TypeRef) -> String {
    match ty {
        TypeRef::Builtin(b) => b.folded().name().into(),
        TypeRef::Named(n) => n.clone(),
        TypeRef::Array(inner) => format!("{}List", type_key(inner)),
    }
}

struct Generator<'a> {
    defs: HashMap<&'a str, &'a TypeDef>,
    used: Vec<Used>,
    names: HashMap<String, String>,
    out: Output,
}

impl Generator<'_> {
    /// introspect.py's `_name`: the next decimal string on first sight.
    fn mask(&mut self, key: &str) -> String {
        let next = self.names.len().to_string();
        self.names.entry(key.to_owned()).or_insert(next).clone()
    }

    /// Queues `item` if new and returns its emitted name.
    fn use_item(&mut self, item: Used) -> String {
        let key = item.key();
        if !self.used.iter().any(|u| u.key() == key) {
            self.used.push(item.clone());
        }
        match item {
            Used::Builtin(b) => b.name().into(),
            Used::Array(element) => {
                let element = self.use_type_unchecked(&element);
                format!("[{element}]")
            }
            _ => self.mask(&key),
        }
    }

    fn use_type_unchecked(&mut self, ty: &TypeRef) -> String {
        match ty {
            TypeRef::Builtin(b) => self.use_item(Used::Builtin(b.folded())),
            TypeRef::Named(n) => self.use_item(Used::Named(n.clone())),
            TypeRef::Array(inner) => {
                let inner = match &**inner {
                    TypeRef::Builtin(b) => TypeRef::Builtin(b.folded()),
                    other => other.clone(),
                };
                self.use_item(Used::Array(inner))
            }
        }
    }

    /// introspect.py's `_use_type`, after checking that named types exist.
    fn use_type(&mut self, user: &str, ty: &TypeRef) -> Result<String, BuildError> {
        self.check_exists(user, ty)?;
        Ok(self.use_type_unchecked(ty))
    }

    fn check_exists(&self, user: &str, ty: &TypeRef) -> Result<(), BuildError> {
        match ty {
            TypeRef::Builtin(_) => Ok(()),
            TypeRef::Array(inner) => self.check_exists(user, inner),
            TypeRef::Named(name) if self.defs.contains_key(name.as_str()) => Ok(()),
            TypeRef::Named(name) => Err(BuildError::UnknownType { user: user.into(), name: name.clone() }),
        }
    }

    fn object_def(&self, user: &str, name: &str) -> Result<&ObjectDef, BuildError> {
        match self.defs.get(name) {
            Some(TypeDef::Object(o)) => Ok(o),
            Some(_) => {
                Err(BuildError::Invalid { user: user.into(), problem: format!("'{name}' is not an object type") })
            }
            None => Err(BuildError::UnknownType { user: user.into(), name: name.into() }),
        }
    }

    fn use_args(&mut self, user: &str, suffix: &str, args: &Args) -> Result<String, BuildError> {
        match args {
            Args::None => Ok(self.use_item(Used::Empty)),
            Args::Members(members) if members.is_empty() => Ok(self.use_item(Used::Empty)),
            Args::Members(members) => {
                Ok(self.use_item(Used::Implicit(format!("q_obj_{user}-{suffix}"), members.clone())))
            }
            Args::Type(name) => {
                self.object_def(user, name)?;
                Ok(self.use_item(Used::Named(name.clone())))
            }
        }
    }

    /// Emits one queued type, queueing the types it uses.
    fn emit(&mut self, item: &Used) -> Result<Value, BuildError> {
        Ok(match item {
            Used::Builtin(b) => json!({"name": b.name(), "meta-type": "builtin", "json-type": b.json_type()}),
            Used::Array(element) => {
                let element = self.use_type_unchecked(element);
                json!({"name": format!("[{element}]"), "meta-type": "array", "element-type": element})
            }
            Used::Empty => {
                let name = self.mask("q_empty");
                json!({"name": name, "meta-type": "object", "members": []})
            }
            Used::Implicit(key, members) => {
                let name = self.mask(key);
                let members = self.members(key, &name, members)?;
                json!({"name": name, "meta-type": "object", "members": members})
            }
            Used::Named(real) => {
                let def = *self
                    .defs
                    .get(real.as_str())
                    .ok_or_else(|| BuildError::UnknownType { user: real.clone(), name: real.clone() })?;
                let name = self.mask(real);
                let mut obj = Map::new();
                obj.insert("name".into(), name.clone().into());
                match def {
                    TypeDef::Enum(e) => {
                        obj.insert("meta-type".into(), "enum".into());
                        let members: Vec<Value> = e
                            .values
                            .iter()
                            .map(|(v, features)| {
                                let mut m = Map::new();
                                m.insert("name".into(), v.clone().into());
                                insert_features(&mut m, features);
                                Value::Object(m)
                            })
                            .collect();
                        obj.insert("members".into(), members.into());
                        let values: Vec<Value> = e.values.iter().map(|(v, _)| v.clone().into()).collect();
                        obj.insert("values".into(), values.into());
                        insert_features(&mut obj, &e.features);
                    }
                    TypeDef::Object(o) => {
                        obj.insert("meta-type".into(), "object".into());
                        let members = self.members(real, &name, &o.members)?;
                        obj.insert("members".into(), members.into());
                        if let Some((tag, variants)) = &o.union {
                            let variants = self.variants(o, tag, variants)?;
                            obj.insert("tag".into(), tag.clone().into());
                            obj.insert("variants".into(), variants.into());
                        }
                        insert_features(&mut obj, &o.features);
                    }
                    TypeDef::Alternate(a) => {
                        obj.insert("meta-type".into(), "alternate".into());
                        self.check_alternate(a)?;
                        let mut members = Vec::new();
                        for branch in &a.branches {
                            let ty = self.use_type(real, branch)?;
                            members.push(json!({"type": ty}));
                        }
                        obj.insert("members".into(), members.into());
                        insert_features(&mut obj, &a.features);
                        self.out.real_names.push((name, real.clone()));
                    }
                }
                Value::Object(obj)
            }
        })
    }

    fn members(&mut self, user: &str, masked: &str, members: &[MemberDef]) -> Result<Vec<Value>, BuildError> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for member in members {
            if !seen.insert(member.name.as_str()) {
                return Err(BuildError::Invalid {
                    user: user.into(),
                    problem: format!("member '{}' is listed twice", member.name),
                });
            }
            let ty = self.use_type(user, &member.ty)?;
            let mut m = Map::new();
            m.insert("name".into(), member.name.clone().into());
            m.insert("type".into(), ty.into());
            if member.optional {
                m.insert("default".into(), Value::Null);
            }
            insert_features(&mut m, &member.features);
            out.push(Value::Object(m));
            if let Some(kind) = member.ty.int_kind() {
                self.out.int_kinds.push(((masked.to_owned(), member.name.clone()), kind));
            }
        }
        Ok(out)
    }

    fn variants(&mut self, o: &ObjectDef, tag: &str, variants: &[(String, String)]) -> Result<Vec<Value>, BuildError> {
        let invalid = |problem: String| BuildError::Invalid { user: o.name.clone(), problem };
        let tag_member = o
            .members
            .iter()
            .find(|m| m.name == tag)
            .ok_or_else(|| invalid(format!("the tag '{tag}' is not a member")))?;
        let values: Vec<String> = match &tag_member.ty {
            TypeRef::Named(n) => match self.defs.get(n.as_str()) {
                Some(TypeDef::Enum(e)) if !tag_member.optional => e.values.iter().map(|(v, _)| v.clone()).collect(),
                _ => return Err(invalid(format!("the tag '{tag}' must be a mandatory enum member"))),
            },
            _ => return Err(invalid(format!("the tag '{tag}' must be a mandatory enum member"))),
        };
        let mut out = Vec::new();
        let mut cases = Vec::new();
        for (case, ty) in variants {
            if !values.contains(case) {
                return Err(invalid(format!("variant '{case}' is not a value of the tag's enum")));
            }
            if cases.contains(&case) {
                return Err(invalid(format!("variant '{case}' is listed twice")));
            }
            cases.push(case);
            self.object_def(&o.name, ty)?;
            let ty = self.use_item(Used::Named(ty.clone()));
            out.push(json!({"case": case, "type": ty}));
        }
        for value in &values {
            if !cases.contains(&value) {
                let ty = self.use_item(Used::Empty);
                out.push(json!({"case": value, "type": ty}));
            }
        }
        Ok(out)
    }

    /// QAPI's alternate rules: one branch per JSON type, no `any`, no nested alternates.
    fn check_alternate(&self, a: &AlternateDef) -> Result<(), BuildError> {
        let mut kinds: Vec<&str> = Vec::new();
        for branch in &a.branches {
            self.check_exists(&a.name, branch)?;
            let kind = match branch {
                TypeRef::Builtin(Builtin::Any) => "any",
                TypeRef::Builtin(b) => match b.json_type() {
                    "int" | "number" => "number",
                    other => other,
                },
                TypeRef::Array(_) => "array",
                TypeRef::Named(n) => match self.defs.get(n.as_str()) {
                    Some(TypeDef::Enum(_)) => "string",
                    Some(TypeDef::Object(_)) => "object",
                    _ => "alternate",
                },
            };
            if kind == "any" || kind == "alternate" {
                return Err(BuildError::Invalid {
                    user: a.name.clone(),
                    problem: format!("a branch cannot be {kind}"),
                });
            }
            if kinds.contains(&kind) {
                return Err(BuildError::Invalid {
                    user: a.name.clone(),
                    problem: format!("two branches take a JSON {kind}"),
                });
            }
            kinds.push(kind);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `builder` and compares the compact JSON of the entities (one per line), or the
    /// error text, with `expected`.
    fn check(builder: &SchemaBuilder, expected: &str) {
        let got = match builder.build() {
            Ok(entities) => entities.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected.trim());
    }

    /// The core of QEMU's own schema: the real 7.2 output starts with `query-status` using
    /// `"0"` for its (empty) arguments and `"1"` for its return, then `stop` shares `"0"`.
    #[test]
    fn masks_names_in_order_of_first_use() {
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("RunState", ["debug", "running", "paused"]))
            .type_(
                ObjectDef::new("StatusInfo")
                    .member(MemberDef::new("running", "bool"))
                    .member(MemberDef::new("status", "RunState")),
            )
            .type_(EnumDef::new("Unused", ["x"]))
            .command(CommandDef::new("query-status").returns("StatusInfo"))
            .event(EventDef::new("STOP"))
            .command(CommandDef::new("stop"));
        check(
            &b,
            r#"
{"name":"query-status","meta-type":"command","arg-type":"0","ret-type":"1"}
{"name":"STOP","meta-type":"event","arg-type":"0"}
{"name":"stop","meta-type":"command","arg-type":"0","ret-type":"0"}
{"name":"0","meta-type":"object","members":[]}
{"name":"1","meta-type":"object","members":[{"name":"running","type":"bool"},{"name":"status","type":"2"}]}
{"name":"bool","meta-type":"builtin","json-type":"boolean"}
{"name":"2","meta-type":"enum","members":[{"name":"debug"},{"name":"running"},{"name":"paused"}],"values":["debug","running","paused"]}
"#,
        );
    }

    #[test]
    fn folds_integers_and_names_arrays() {
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("QMPCapability", ["oob"]).value_feature("oob", "unstable")).command(
            CommandDef::new("set")
                .arg(MemberDef::new("a", Builtin::Uint8))
                .arg(MemberDef::optional("b", TypeRef::array("size")))
                .arg(MemberDef::optional("c", TypeRef::array("QMPCapability")).feature("deprecated"))
                .arg(MemberDef::optional("d", "int64"))
                .returns(TypeRef::array("str"))
                .allow_oob()
                .feature("unstable"),
        );
        check(
            &b,
            r#"
{"name":"set","meta-type":"command","arg-type":"0","ret-type":"[str]","allow-oob":true,"features":["unstable"]}
{"name":"0","meta-type":"object","members":[{"name":"a","type":"int"},{"name":"b","type":"[int]","default":null},{"name":"c","type":"[1]","default":null,"features":["deprecated"]},{"name":"d","type":"int","default":null}]}
{"name":"[str]","meta-type":"array","element-type":"str"}
{"name":"str","meta-type":"builtin","json-type":"string"}
{"name":"int","meta-type":"builtin","json-type":"int"}
{"name":"[int]","meta-type":"array","element-type":"int"}
{"name":"[1]","meta-type":"array","element-type":"1"}
{"name":"1","meta-type":"enum","members":[{"name":"oob","features":["unstable"]}],"values":["oob"]}
"#,
        );
    }

    #[test]
    fn unions_and_alternates() {
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("Driver", ["file", "null-co", "qcow2"]))
            .type_(
                ObjectDef::new("BlockdevOptions")
                    .member(MemberDef::new("driver", "Driver"))
                    .member(MemberDef::optional("node-name", "str"))
                    .union("driver", [("null-co", "NullOpts"), ("file", "FileOpts")]),
            )
            .type_(ObjectDef::new("FileOpts").member(MemberDef::new("filename", "str")))
            .type_(ObjectDef::new("NullOpts").member(MemberDef::optional("size", "int")))
            .type_(AlternateDef::new("StrOrNull", ["str", "null"]))
            .command(CommandDef::new("blockdev-add").arg_type("BlockdevOptions"))
            .event(EventDef::new("X").member(MemberDef::new("v", "StrOrNull")));
        check(
            &b,
            r#"
{"name":"blockdev-add","meta-type":"command","arg-type":"0","ret-type":"1"}
{"name":"X","meta-type":"event","arg-type":"2"}
{"name":"0","meta-type":"object","members":[{"name":"driver","type":"3"},{"name":"node-name","type":"str","default":null}],"tag":"driver","variants":[{"case":"null-co","type":"4"},{"case":"file","type":"5"},{"case":"qcow2","type":"1"}]}
{"name":"1","meta-type":"object","members":[]}
{"name":"2","meta-type":"object","members":[{"name":"v","type":"6"}]}
{"name":"3","meta-type":"enum","members":[{"name":"file"},{"name":"null-co"},{"name":"qcow2"}],"values":["file","null-co","qcow2"]}
{"name":"str","meta-type":"builtin","json-type":"string"}
{"name":"4","meta-type":"object","members":[{"name":"size","type":"int","default":null}]}
{"name":"5","meta-type":"object","members":[{"name":"filename","type":"str"}]}
{"name":"6","meta-type":"alternate","members":[{"type":"str"},{"type":"null"}]}
{"name":"int","meta-type":"builtin","json-type":"int"}
{"name":"null","meta-type":"builtin","json-type":"null"}
"#,
        );
    }

    #[test]
    fn errors() {
        let mut b = SchemaBuilder::new();
        b.command(CommandDef::new("x").returns("Nope"));
        check(&b, "'x' uses type 'Nope', which is not defined");
        let mut b = SchemaBuilder::new();
        b.command(CommandDef::new("x")).event(EventDef::new("x"));
        check(&b, "'x' is defined twice");
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("E", ["a"])).type_(EnumDef::new("E", ["b"]));
        check(&b, "'E' is defined twice");
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("str", ["a"]));
        check(&b, "'str': the name is reserved");
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("E", ["a"])).command(CommandDef::new("x").arg_type("E"));
        check(&b, "'x': 'E' is not an object type");
        let mut b = SchemaBuilder::new();
        b.type_(ObjectDef::new("U").member(MemberDef::new("t", "str")).union("t", [("a", "U")]))
            .command(CommandDef::new("x").arg_type("U"));
        check(&b, "'U': the tag 't' must be a mandatory enum member");
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("E", ["a"]))
            .type_(ObjectDef::new("U").member(MemberDef::new("t", "E")).union("t", [("b", "U")]))
            .command(CommandDef::new("x").arg_type("U"));
        check(&b, "'U': variant 'b' is not a value of the tag's enum");
        let mut b = SchemaBuilder::new();
        b.type_(AlternateDef::new("A", ["int", "number"])).command(CommandDef::new("x").returns("A"));
        check(&b, "'A': two branches take a JSON number");
        let mut b = SchemaBuilder::new();
        b.type_(AlternateDef::new("A", ["any"])).command(CommandDef::new("x").returns("A"));
        check(&b, "'A': a branch cannot be any");
        let mut b = SchemaBuilder::new();
        b.command(CommandDef::new("x").arg(MemberDef::new("a", "str")).arg(MemberDef::new("a", "int")));
        check(&b, "'q_obj_x-arg': member 'a' is listed twice");
    }

    /// Round trip: build, load, validate; the builder's schema knows integer widths and
    /// alternate names, so range and alternate errors carry QEMU's full texts.
    #[test]
    fn round_trip_validation() {
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("QMPCapability", ["oob"]))
            .type_(AlternateDef::new("BlockdevRef", [TypeRef::from("str"), TypeRef::named("Opts")]))
            .type_(ObjectDef::new("Opts").member(MemberDef::new("n", "int8")))
            .command(
                CommandDef::new("qmp_capabilities").arg(MemberDef::optional("enable", TypeRef::array("QMPCapability"))),
            )
            .command(
                CommandDef::new("sized")
                    .arg(MemberDef::optional("i8", "int8"))
                    .arg(MemberDef::optional("u8", "uint8"))
                    .arg(MemberDef::optional("u64", "uint64"))
                    .arg(MemberDef::optional("i64", "int"))
                    .arg(MemberDef::optional("list", TypeRef::array("uint16")))
                    .arg(MemberDef::optional("bytes", Builtin::Size))
                    .arg(MemberDef::optional("ref", "BlockdevRef")),
            );
        let schema = b.build_schema().unwrap();
        let check_args = |cmd: &str, args: Value, expected: &str| {
            let got = match schema.command(cmd).unwrap().validate(args.as_object()) {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.desc().to_owned(),
            };
            assert_eq!(got, expected, "{cmd} {args}");
        };
        check_args(
            "qmp_capabilities",
            serde_json::json!({"enable": ["bogus"]}),
            "Parameter 'null' does not accept value 'bogus'",
        );
        check_args("sized", serde_json::json!({"i8": 127, "u8": 255, "u64": -1, "i64": -9}), "ok");
        check_args("sized", serde_json::json!({"i8": 128}), "Parameter 'i8' expects int8_t");
        check_args("sized", serde_json::json!({"i8": -129}), "Parameter 'i8' expects int8_t");
        check_args("sized", serde_json::json!({"u8": 256}), "Parameter 'u8' expects uint8_t");
        check_args("sized", serde_json::json!({"u8": -1}), "Parameter 'u8' expects uint8_t");
        check_args("sized", serde_json::json!({"u8": "1"}), "Parameter 'u8' expects uint64");
        check_args("sized", serde_json::json!({"u64": 1.5}), "Parameter 'u64' expects uint64");
        check_args("sized", serde_json::json!({"u64": 18446744073709551615u64}), "ok");
        check_args("sized", serde_json::json!({"bytes": "1G"}), "Parameter 'bytes' expects uint64");
        check_args("sized", serde_json::json!({"bytes": 4096}), "ok");
        check_args(
            "sized",
            serde_json::json!({"i64": 18446744073709551615u64}),
            "Invalid parameter type for 'i64', expected: integer",
        );
        check_args("sized", serde_json::json!({"list": [1, 65536]}), "Parameter 'null' expects uint16_t");
        check_args(
            "sized",
            serde_json::json!({"ref": true}),
            "Invalid parameter type for 'ref', expected: BlockdevRef",
        );
        check_args("sized", serde_json::json!({"ref": {"n": 300}}), "Parameter 'n' expects int8_t");
        check_args("sized", serde_json::json!({"ref": "node"}), "ok");
        assert_eq!(
            schema.command("sized").unwrap().arg_type().as_object().unwrap().member("u8").unwrap().int_kind(),
            Some(IntKind::Uint8)
        );
    }

    /// Types that refer to themselves: an object member of its own type, a union that is
    /// its own variant, an array of an alternate that holds it. Each is emitted once, and
    /// the loaded schema renders and validates them without following the cycle forever.
    #[test]
    fn recursive_definitions() {
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("Kind", ["leaf", "loop"]))
            .type_(
                ObjectDef::new("Node").member(MemberDef::new("v", "int8")).member(MemberDef::optional("next", "Node")),
            )
            .type_(
                ObjectDef::new("Self")
                    .member(MemberDef::new("kind", "Kind"))
                    .member(MemberDef::optional("x", "int"))
                    .union("kind", [("loop", "Self")]),
            )
            .type_(AlternateDef::new("Tree", [TypeRef::from("str"), TypeRef::array("Tree")]))
            .command(
                CommandDef::new("walk")
                    .arg(MemberDef::optional("node", "Node"))
                    .arg(MemberDef::optional("tree", "Tree"))
                    .returns("Self"),
            )
            .command(CommandDef::new("union").arg_type("Self"));
        let schema = b.build_schema().unwrap();
        assert_eq!(schema.len(), 11, "each type once: {:?}", schema.to_value());
        let walk = schema.command("walk").unwrap();
        assert_eq!(
            walk.signature(),
            "walk(node?: {v: int, next?: {…}}, tree?: (str | […])) -> {kind: 'leaf'|'loop', x?: int; 'loop': {kind: 'leaf'|'loop', x?: int; 'loop': {…}}}"
        );
        let args = serde_json::json!({"node": {"v": 1, "next": {"v": 300}}, "tree": ["a", ["b", []]]});
        assert_eq!(walk.validate(args.as_object()).unwrap_err().desc(), "Parameter 'v' expects int8_t");
        let args = serde_json::json!({"tree": ["a", [1]]});
        assert_eq!(
            walk.validate(args.as_object()).unwrap_err().desc(),
            "Invalid parameter type for 'null', expected: Tree"
        );
        let union = schema.command("union").unwrap();
        assert_eq!(union.complete_members(&[]), ["kind", "x"]);
        assert_eq!(union.validate(serde_json::json!({"kind": "loop", "x": 1}).as_object()), Ok(()));
    }
}
