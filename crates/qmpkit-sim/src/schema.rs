//! QEMU's own schema as the source of the simulated commands' descriptions.
//!
//! Each profile carries the `query-qmp-schema` reply of the real QEMU it imitates. Instead of
//! describing the simulated commands by hand (and drifting from QEMU), the simulator takes
//! every command's and event's description from that reply: [`Reached`] walks the graph from
//! the chosen commands and events and turns each entity it reaches back into the server
//! library's definitions ([`CommandDef`], [`EventDef`], [`TypeDef`]). Arguments are then
//! validated exactly as QEMU's generated visitors do, and `query-qmp-schema` describes each
//! simulated command with QEMU's own structure.
//!
//! The server library numbers the masked type names itself, in its own order of first use,
//! so a type QEMU calls `"262"` may be `"17"` here; the structure behind each name is QEMU's.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use qmpkit::server::{AlternateDef, Args, CommandDef, EnumDef, EventDef, MemberDef, ObjectDef, TypeDef, TypeRef};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::SimError;
use crate::profile::Profile;

/// A profile's schema and the definitions of the simulated entities, made once per process
/// and shared by every machine of that profile (a process may serve thousands).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) schema: QemuSchema,
    pub(crate) reached: Reached,
    /// Whether `query-status` returns `singlestep` (gone in QEMU 8.2), looked up once
    /// rather than on every call.
    pub(crate) status_has_singlestep: bool,
}

/// The server library's built-in commands, which QEMU's schema describes too.
const BUILTINS: &[&str] = &[
    "qmp_capabilities",
    "query-commands",
    "query-qmp-schema",
    "query-version",
    "getfd",
    "closefd",
    "add-fd",
    "remove-fd",
    "query-fdsets",
];

impl Prepared {
    /// QEMU's own `query-qmp-schema` entries for what the simulator has, verbatim and in
    /// QEMU's order: the built-in and fd commands, the simulated commands and events, and
    /// every type they reach, under QEMU's masked names.
    pub(crate) fn introspection(&self) -> Vec<Value> {
        let roots = BUILTINS.iter().chain(crate::COMMANDS).chain(crate::EVENTS);
        self.schema.subset(roots.copied())
    }
}

/// The [`Prepared`] schema of `profile`.
pub(crate) fn prepared(profile: &Profile) -> Result<Arc<Prepared>, SimError> {
    /// Per (major, minor) version.
    type Cache = Vec<((u64, u64), Arc<Prepared>)>;
    static CACHE: Mutex<Cache> = Mutex::new(Vec::new());
    let key = (profile.major, profile.minor);
    let mut cache = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, prepared)) = cache.iter().find(|(k, _)| *k == key) {
        return Ok(prepared.clone());
    }
    let schema = QemuSchema::parse(profile.qemu_schema())?;
    let reached = Reached::collect(&schema, crate::COMMANDS, crate::EVENTS)?;
    let status_has_singlestep = schema.return_members("query-status").iter().any(|m| m == "singlestep");
    let prepared = Arc::new(Prepared { schema, reached, status_has_singlestep });
    cache.push((key, prepared.clone()));
    Ok(prepared)
}

/// QEMU's schema, indexed by entity name. Only the entities the simulator looks at are
/// parsed, on first use: parsing all of QEMU's ~2,000 entities was most of the simulator's
/// start-up time.
#[derive(Debug)]
pub(crate) struct QemuSchema {
    /// Each entity's text, and its value once parsed.
    entities: HashMap<&'static str, (&'static RawValue, OnceLock<Value>)>,
    /// The entity names in QEMU's order.
    order: Vec<&'static str>,
    /// The name of QEMU's empty object type (`q_empty`), which stands for "no arguments" and
    /// "returns `{}`".
    empty: Option<String>,
}

/// A `query-qmp-schema` reply, its entities left unparsed.
#[derive(serde::Deserialize)]
struct RawReply<'a> {
    #[serde(borrow, rename = "return")]
    entities: Vec<&'a RawValue>,
}

/// Just an entity's name.
#[derive(serde::Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    name: &'a str,
}

impl QemuSchema {
    /// Indexes a raw `query-qmp-schema` reply (`{"return": [...]}`) or its bare array.
    pub(crate) fn parse(json: &'static str) -> Result<Self, SimError> {
        let bad = |e: serde_json::Error| SimError::Schema(e.to_string());
        let list: Vec<&'static RawValue> = if json.trim_start().starts_with('[') {
            serde_json::from_str(json).map_err(bad)?
        } else {
            serde_json::from_str::<RawReply<'static>>(json).map_err(bad)?.entities
        };
        let mut entities = HashMap::with_capacity(list.len());
        let mut order = Vec::with_capacity(list.len());
        for entity in list {
            let named: Named<'static> = serde_json::from_str(entity.get())
                .map_err(|e| SimError::Schema(format!("an entity has no name: {e}")))?;
            order.push(named.name);
            entities.insert(named.name, (entity, OnceLock::new()));
        }
        let mut schema = QemuSchema { entities, order, empty: None };
        schema.empty =
            schema.entity("stop").and_then(|stop| stop.get("arg-type")).and_then(Value::as_str).map(str::to_owned);
        Ok(schema)
    }

    /// The entities named in `roots` and every entity they reach, as QEMU lists them (in
    /// QEMU's order); names the schema lacks are skipped.
    pub(crate) fn subset<'a>(&self, roots: impl Iterator<Item = &'a str>) -> Vec<Value> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue: Vec<String> = roots.map(str::to_owned).collect();
        while let Some(name) = queue.pop() {
            let Some((&name, _)) = self.entities.get_key_value(name.as_str()) else { continue };
            if !seen.insert(name) {
                continue;
            }
            let Some(entity) = self.entity(name) else { continue };
            let lists = ["members", "variants"].map(|k| entity.get(k).and_then(Value::as_array));
            let items = lists.into_iter().flatten().flatten();
            let refs = ["arg-type", "ret-type", "element-type"].iter().filter_map(|k| entity.get(*k));
            let refs = refs.chain(items.filter_map(|item| item.get("type")));
            queue.extend(refs.filter_map(Value::as_str).map(str::to_owned));
        }
        self.order.iter().filter(|n| seen.contains(*n)).filter_map(|n| self.entity(n).cloned()).collect()
    }

    /// QEMU's empty object type (`q_empty`, masked), which commands without arguments or
    /// results name.
    pub(crate) fn empty_type(&self) -> &str {
        self.empty.as_deref().unwrap_or("0")
    }

    /// The entity called `name`.
    pub(crate) fn entity(&self, name: &str) -> Option<&Value> {
        let (raw, parsed) = self.entities.get(name)?;
        // The text was checked as JSON when it was indexed, so parsing it cannot fail.
        Some(parsed.get_or_init(|| serde_json::from_str(raw.get()).unwrap_or(Value::Null)))
    }

    /// The names of an object type's members, or of the return type's members of a command
    /// (an array's element type for commands returning lists).
    pub(crate) fn return_members(&self, command: &str) -> Vec<String> {
        let Some(ret) = self.entity(command).and_then(|c| c.get("ret-type")).and_then(Value::as_str) else {
            return Vec::new();
        };
        let element = ret.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(ret);
        self.members(element)
    }

    /// The member names of an event's data.
    pub(crate) fn event_members(&self, event: &str) -> Vec<String> {
        match self.entity(event).and_then(|e| e.get("arg-type")).and_then(Value::as_str) {
            Some(arg) => self.members(arg),
            None => Vec::new(),
        }
    }

    fn members(&self, ty: &str) -> Vec<String> {
        self.entity(ty)
            .and_then(|t| t.get("members"))
            .and_then(Value::as_array)
            .map(|members| members.iter().filter_map(|m| m.get("name")?.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// The definitions reached from a set of commands and events, ready for a registry.
#[derive(Debug, Default)]
pub(crate) struct Reached {
    /// Every object, enum and alternate type used, under QEMU's masked name.
    pub(crate) types: Vec<TypeDef>,
    /// The commands, by name.
    pub(crate) commands: HashMap<String, CommandDef>,
    /// The events, in the order asked for.
    pub(crate) events: Vec<EventDef>,
}

impl Reached {
    /// Converts the named commands and events (those the schema has; others are skipped)
    /// and every type they reach.
    pub(crate) fn collect(schema: &QemuSchema, commands: &[&str], events: &[&str]) -> Result<Self, SimError> {
        let mut walk = Walk { schema, seen: HashSet::new(), queue: Vec::new() };
        let mut reached = Reached::default();
        for &name in commands {
            let Some(entity) = schema.entity(name) else { continue };
            let mut def = CommandDef::new(name);
            def.args = walk.args(entity.get("arg-type"))?;
            let ret = str_of(entity, "ret-type")?;
            if Some(ret) != schema.empty.as_deref() {
                def.ret = Some(walk.type_ref(ret));
            }
            def.allow_oob = entity.get("allow-oob").and_then(Value::as_bool).unwrap_or(false);
            def.features = features(entity);
            reached.commands.insert(name.to_owned(), def);
        }
        for &name in events {
            let Some(entity) = schema.entity(name) else { continue };
            let mut def = EventDef::new(name);
            def.data = walk.args(entity.get("arg-type"))?;
            def.features = features(entity);
            reached.events.push(def);
        }
        while let Some(name) = walk.queue.pop() {
            let def = walk.type_def(&name)?;
            reached.types.push(def);
        }
        Ok(reached)
    }
}

struct Walk<'a> {
    schema: &'a QemuSchema,
    seen: HashSet<String>,
    queue: Vec<String>,
}

impl Walk<'_> {
    fn args(&mut self, arg_type: Option<&Value>) -> Result<Args, SimError> {
        let name =
            arg_type.and_then(Value::as_str).ok_or_else(|| SimError::Schema("an entity lacks arg-type".into()))?;
        if Some(name) == self.schema.empty.as_deref() {
            return Ok(Args::None);
        }
        self.use_named(name);
        Ok(Args::Type(name.to_owned()))
    }

    fn type_ref(&mut self, name: &str) -> TypeRef {
        if let Some(element) = name.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            return TypeRef::array(self.type_ref(element));
        }
        match self.schema.entity(name).and_then(|e| e.get("meta-type")).and_then(Value::as_str) {
            Some("builtin") | None => TypeRef::from(name),
            Some(_) => {
                self.use_named(name);
                TypeRef::named(name)
            }
        }
    }

    fn use_named(&mut self, name: &str) {
        if self.seen.insert(name.to_owned()) {
            self.queue.push(name.to_owned());
        }
    }

    fn type_def(&mut self, name: &str) -> Result<TypeDef, SimError> {
        let entity = self.schema.entity(name).ok_or_else(|| SimError::Schema(format!("type '{name}' is missing")))?;
        let strings = |key: &str| -> Vec<String> {
            entity
                .get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        match str_of(entity, "meta-type")? {
            "enum" => {
                let mut def = EnumDef::new(name, strings("values"));
                if let Some(members) = entity.get("members").and_then(Value::as_array) {
                    for member in members {
                        let value = member.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                        for feature in features(member) {
                            def = def.value_feature(&value, feature);
                        }
                    }
                }
                Ok(def.into())
            }
            "alternate" => {
                let members = entity.get("members").and_then(Value::as_array).cloned().unwrap_or_default();
                let mut branches = Vec::new();
                for member in &members {
                    branches.push(self.type_ref(str_of(member, "type")?));
                }
                Ok(AlternateDef::new(name, branches).into())
            }
            "object" => {
                let mut def = ObjectDef::new(name);
                for member in entity.get("members").and_then(Value::as_array).into_iter().flatten() {
                    let ty = self.type_ref(str_of(member, "type")?);
                    let member_name = str_of(member, "name")?;
                    let mut m = if member.get("default").is_some() {
                        MemberDef::optional(member_name, ty)
                    } else {
                        MemberDef::new(member_name, ty)
                    };
                    for feature in features(member) {
                        m = m.feature(feature);
                    }
                    def = def.member(m);
                }
                if let Some(tag) = entity.get("tag").and_then(Value::as_str) {
                    let mut variants = Vec::new();
                    for variant in entity.get("variants").and_then(Value::as_array).into_iter().flatten() {
                        let ty = str_of(variant, "type")?;
                        // Cases without members use the empty type, which the builder adds itself.
                        if Some(ty) != self.schema.empty.as_deref() {
                            self.use_named(ty);
                            variants.push((str_of(variant, "case")?.to_owned(), ty.to_owned()));
                        }
                    }
                    def = def.union(tag, variants);
                }
                for feature in features(entity) {
                    def = def.feature(feature);
                }
                Ok(def.into())
            }
            other => Err(SimError::Schema(format!("type '{name}' has meta-type '{other}'"))),
        }
    }
}

fn str_of<'v>(entity: &'v Value, key: &str) -> Result<&'v str, SimError> {
    entity.get(key).and_then(Value::as_str).ok_or_else(|| SimError::Schema(format!("an entity lacks '{key}'")))
}

fn features(entity: &Value) -> Vec<String> {
    entity
        .get("features")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::Value;

    use crate::{COMMANDS, EVENTS, PROFILES, Sim};

    type Entities = HashMap<String, Value>;

    fn index(list: &Value) -> Entities {
        list.as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone())).collect()
    }

    /// Checks that our entity `ours` has QEMU's structure `theirs`, mapping masked names
    /// one to one as it goes.
    fn same(
        o: &Entities,
        q: &Entities,
        ours: &str,
        theirs: &str,
        map: &mut HashMap<String, String>,
    ) -> Result<(), String> {
        let arrays = (
            ours.strip_prefix('[').and_then(|s| s.strip_suffix(']')),
            theirs.strip_prefix('[').and_then(|s| s.strip_suffix(']')),
        );
        match arrays {
            (Some(a), Some(b)) => return same(o, q, a, b, map),
            (None, None) => {}
            _ => return Err(format!("{ours} vs {theirs}: one is an array")),
        }
        if let Some(mapped) = map.get(ours) {
            return if mapped == theirs { Ok(()) } else { Err(format!("{ours} maps to {mapped} and {theirs}")) };
        }
        map.insert(ours.to_owned(), theirs.to_owned());
        let (a, b) = (&o[ours], &q[theirs]);
        let field = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        for key in ["meta-type", "values", "json-type", "allow-oob", "features", "tag"] {
            if field(a, key) != field(b, key) {
                return Err(format!("{ours} vs {theirs}: '{key}' differs: {} vs {}", field(a, key), field(b, key)));
            }
        }
        for key in ["arg-type", "ret-type", "element-type"] {
            if let (Some(x), Some(y)) = (a[key].as_str(), b[key].as_str()) {
                same(o, q, x, y, map)?;
            }
        }
        let members = |v: &Value| v.get("members").and_then(Value::as_array).cloned().unwrap_or_default();
        let (ma, mb) = (members(a), members(b));
        if ma.len() != mb.len() {
            return Err(format!("{ours} vs {theirs}: {} members vs {}", ma.len(), mb.len()));
        }
        for (x, y) in ma.iter().zip(&mb) {
            for key in ["name", "default", "features"] {
                if field(x, key) != field(y, key) || x.get(key).is_some() != y.get(key).is_some() {
                    return Err(format!("{ours} vs {theirs}: member {x} vs {y}"));
                }
            }
            if let (Some(tx), Some(ty)) = (x["type"].as_str(), y["type"].as_str()) {
                same(o, q, tx, ty, map)?;
            }
        }
        let variants = |v: &Value| -> HashMap<String, String> {
            v.get("variants")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| (v["case"].as_str().unwrap().to_owned(), v["type"].as_str().unwrap().to_owned()))
                .collect()
        };
        let (va, vb) = (variants(a), variants(b));
        if va.len() != vb.len() {
            return Err(format!("{ours} vs {theirs}: {} variants vs {}", va.len(), vb.len()));
        }
        for (case, ty) in &vb {
            let mine = va.get(case).ok_or_else(|| format!("{ours}: no variant {case}"))?;
            same(o, q, mine, ty, map)?;
        }
        Ok(())
    }

    #[test]
    fn every_simulated_entity_has_qemus_structure() {
        for profile in PROFILES {
            // The descriptions the arguments are validated with, not the verbatim answer.
            let prepared = super::prepared(&profile).unwrap();
            let built = crate::commands::build(&prepared, false).unwrap();
            let ours = index(&built.introspect().unwrap());
            let qemu = index(&serde_json::from_str::<Value>(profile.qemu_schema()).unwrap()["return"]);
            let mut map = HashMap::new();
            let mut checked = 0;
            for &name in COMMANDS.iter().chain(EVENTS) {
                assert!(qemu.contains_key(name), "{profile}: QEMU has no {name}");
                same(&ours, &qemu, name, name, &mut map).unwrap_or_else(|e| panic!("{profile}: {name}: {e}"));
                checked += 1;
            }
            assert_eq!(checked, COMMANDS.len() + EVENTS.len());
            // Every type the simulated entities use was compared, not just the entities.
            assert!(map.len() > 50, "{profile}: only {} types compared", map.len());
        }
    }

    #[test]
    fn query_qmp_schema_answers_qemus_own_entries() {
        for profile in PROFILES {
            let sim = Sim::builder().profile(profile).build().unwrap();
            let ours = sim.server().registry().introspect().unwrap();
            let qemu = index(&serde_json::from_str::<Value>(profile.qemu_schema()).unwrap()["return"]);
            let ours = ours.as_array().unwrap();
            for entity in ours {
                let name = entity["name"].as_str().unwrap();
                assert_eq!(Some(entity), qemu.get(name), "{profile}: {name} is not QEMU's own entry");
            }
            let names: Vec<&str> = ours.iter().map(|e| e["name"].as_str().unwrap()).collect();
            for name in COMMANDS.iter().chain(EVENTS).chain(&["query-qmp-schema", "getfd", "add-fd"]) {
                assert!(names.contains(name), "{profile}: {name} missing");
            }
            assert!(!names.contains(&"blockdev-add"), "{profile}: only what the simulator has");
            // With the fault commands, their own entries follow QEMU's, and resolve.
            let faults = Sim::builder().profile(profile).faults(true).build().unwrap();
            let all = index(&faults.server().registry().introspect().unwrap());
            let hold = &all["__org.qmpkit_hold"];
            assert!(all.contains_key(hold["arg-type"].as_str().unwrap()), "{hold}");
            let watchdog = &all["__org.qmpkit_watchdog"];
            let args = &all[watchdog["arg-type"].as_str().unwrap()];
            let action = args["members"][0]["type"].as_str().unwrap();
            assert_eq!(all[action]["values"][0], "reset");
        }
    }
}
