//! The entry point of the `schema` fuzz target in `fuzz/`: loads an arbitrary schema, then
//! renders, completes and validates everything in it, checking invariants that must hold
//! whatever a peer's `query-qmp-schema` says.
//!
//! The same bytes are read two ways. As JSON text, they reach the loader's error paths and
//! whatever shapes the fuzzer finds; as a recipe, they build a small graph of entities whose
//! references point anywhere, so that cycles (an array of itself, a union that is its own
//! variant, alternates that refer back) are reached at once instead of by luck.

use serde_json::{Map, Value, json};

use crate::index::{Schema, Type, TypeKind};
use crate::render::{RenderOptions, render_type};

/// Loads `data` as a schema in JSON and as a recipe for one, and exercises both.
pub fn schema(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        // The entities themselves are arbitrary objects: good arguments to validate too.
        let args: Vec<Value> = match &value {
            Value::Array(items) => items.iter().take(8).cloned().collect(),
            other => vec![other.clone()],
        };
        if let Ok(schema) = Schema::from_value(value) {
            exercise(&schema, &args, data);
        }
    }
    let mut recipe = Recipe { data, pos: 0 };
    let entities = recipe.entities();
    let schema = Schema::from_value(entities).expect("a recipe names only entities it defines");
    let mut args: Vec<Value> = schema.commands().map(|c| recipe.sample(c.arg_type(), 6)).collect();
    if let Ok(rest) = serde_json::from_slice::<Value>(&data[recipe.pos.min(data.len())..]) {
        args.push(rest);
    }
    exercise(&schema, &args, data);
}

/// Renders, completes and validates everything in `schema`, validating each of `args` too.
fn exercise(schema: &Schema, args: &[Value], data: &[u8]) {
    // What was loaded serializes back to what loads again.
    let again = Schema::from_value(schema.to_value()).expect("a loaded schema reloads");
    assert_eq!(again.infos(), schema.infos());

    let byte = |i: usize| data.get(i).copied().map_or(0, usize::from);
    let opts = RenderOptions { depth: byte(0) % 8, max_enum_values: byte(1) % 8, max_variants: byte(2) % 8 };
    for command in schema.commands() {
        let prefix = format!("{}(", command.name());
        assert!(command.signature().starts_with(&prefix));
        assert!(command.signature_with(&opts).starts_with(&prefix));
        let top = command.complete_members(&[]);
        for name in top.iter().take(16) {
            let _ = command.complete_values(&[name]);
            for inner in command.complete_members(&[name]).iter().take(16) {
                let _ = command.complete_values(&[name, "0", inner]);
            }
        }
        check_verdict(command.validate(None));
        for value in args {
            check_verdict(command.validate(value.as_object()));
        }
    }
    for event in schema.events() {
        assert!(event.signature().starts_with(&format!("{}(", event.name())));
        check_verdict(event.validate(None));
        for value in args {
            check_verdict(event.validate(value.as_object()));
        }
    }
    for ty in schema.types() {
        let _ = render_type(ty, &opts);
        for value in args.iter().take(4) {
            check_verdict(ty.validate_value("x", value));
        }
    }
}

/// Every error has QEMU's class and a text that names what it is about.
fn check_verdict(verdict: Result<(), crate::ArgumentError>) {
    if let Err(err) = verdict {
        assert_eq!(err.class(), "GenericError");
        assert!(err.desc().contains(err.name()) || err.kind() == crate::ArgumentErrorKind::TooDeep);
    }
}

/// Builtins every recipe may refer to.
const BUILTINS: [(&str, &str); 6] =
    [("str", "string"), ("int", "int"), ("number", "number"), ("bool", "boolean"), ("null", "null"), ("any", "value")];

/// Names of members, enum values and union cases: few, so that they collide.
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// Bytes read as choices; zeros once they run out.
struct Recipe<'d> {
    data: &'d [u8],
    pos: usize,
}

impl Recipe<'_> {
    fn byte(&mut self) -> usize {
        let byte = self.data.get(self.pos).copied().map_or(0, usize::from);
        self.pos += 1;
        byte
    }

    /// A few types (`t0`, `t1`, ...) of every meta-type, referring to each other and to the
    /// builtins by choice, and commands and an event that use them.
    fn entities(&mut self) -> Value {
        let types = 1 + self.byte() % 10;
        let refer = |recipe: &mut Self| -> String {
            let choice = recipe.byte() % (types + BUILTINS.len());
            match choice.checked_sub(BUILTINS.len()) {
                Some(t) => format!("t{t}"),
                None => BUILTINS[choice].0.to_owned(),
            }
        };
        let mut out: Vec<Value> = BUILTINS
            .iter()
            .map(|(name, json_type)| json!({"name": name, "meta-type": "builtin", "json-type": json_type}))
            .collect();
        for t in 0..types {
            let name = format!("t{t}");
            let entity = match self.byte() % 5 {
                0 => json!({"name": name, "meta-type": "enum", "values": NAMES[..self.byte() % 5]}),
                1 => json!({"name": name, "meta-type": "array", "element-type": refer(self)}),
                2 => {
                    let mut members = Vec::new();
                    for member in &NAMES[..self.byte() % 5] {
                        let mut m = Map::new();
                        m.insert("name".into(), json!(member));
                        m.insert("type".into(), json!(refer(self)));
                        if self.byte() % 2 == 1 {
                            m.insert("default".into(), Value::Null);
                        }
                        members.push(Value::Object(m));
                    }
                    let mut object = json!({"name": name, "meta-type": "object", "members": members});
                    if self.byte() % 2 == 1 {
                        let tag = NAMES[self.byte() % NAMES.len()];
                        let variants: Vec<Value> = NAMES[..self.byte() % 4]
                            .iter()
                            .map(|case| json!({"case": case, "type": refer(self)}))
                            .collect();
                        object["tag"] = json!(tag);
                        object["variants"] = json!(variants);
                    }
                    object
                }
                3 => {
                    let branches: Vec<Value> = (0..self.byte() % 4).map(|_| json!({"type": refer(self)})).collect();
                    json!({"name": name, "meta-type": "alternate", "members": branches})
                }
                _ => json!({"name": name, "meta-type": "hologram"}),
            };
            out.push(entity);
        }
        for c in 0..1 + self.byte() % 3 {
            out.push(json!({"name": format!("cmd{c}"), "meta-type": "command",
                "arg-type": refer(self), "ret-type": refer(self)}));
        }
        out.push(json!({"name": "EVENT", "meta-type": "event", "arg-type": refer(self)}));
        Value::Array(out)
    }

    /// A value for `ty` that is mostly valid, so that validation goes deep: members are
    /// filled in, union tags set to a case, and the bytes choose optional members, array
    /// lengths, and now and then a wrong value.
    fn sample(&mut self, ty: Type<'_>, depth: usize) -> Value {
        if depth == 0 || self.byte() % 16 == 15 {
            return json!(self.byte());
        }
        match ty.kind() {
            TypeKind::Builtin(json_type) => match json_type.as_str() {
                "string" => json!(NAMES[self.byte() % NAMES.len()]),
                "int" => json!(self.byte()),
                "number" => json!(0.5),
                "boolean" => json!(true),
                "null" => Value::Null,
                _ => json!({}),
            },
            TypeKind::Enum(e) => json!(e.values().nth(self.byte() % 4).unwrap_or("z")),
            TypeKind::Array(element) => {
                Value::Array((0..self.byte() % 3).map(|_| self.sample(element, depth - 1)).collect())
            }
            TypeKind::Object(o) => {
                let mut map = Map::new();
                let mut current = Some(o);
                // A few steps down a chain of variants, which may loop.
                for _ in 0..4 {
                    let Some(o) = current.take() else { break };
                    for member in o.members() {
                        if !member.optional() || self.byte() % 2 == 1 {
                            let value = self.sample(member.ty(), depth - 1);
                            map.insert(member.name().to_owned(), value);
                        }
                    }
                    if let Some(tag) = o.tag() {
                        let cases: Vec<_> = o.variants().collect();
                        if let Some((case, variant)) = cases.get(self.byte() % (cases.len() + 1)) {
                            map.insert(tag.to_owned(), json!(case));
                            current = variant.as_object();
                        }
                    }
                }
                Value::Object(map)
            }
            TypeKind::Alternate(a) => {
                let branches: Vec<_> = a.members().collect();
                match branches.get(self.byte() % (branches.len() + 1)) {
                    Some(branch) => self.sample(*branch, depth - 1),
                    None => Value::Null,
                }
            }
            TypeKind::Other => json!([]),
        }
    }
}

#[cfg(test)]
mod tests {
    /// A small deterministic generator, so that the noise is the same on every run.
    fn noise(seed: u64, len: usize, alphabet: &[u8]) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    /// Schemas whose types refer to themselves, one per shape.
    const CYCLES: &[&str] = &[
        r#"[{"name":"c","meta-type":"command","arg-type":"o","ret-type":"A"},
            {"name":"A","meta-type":"array","element-type":"A"},
            {"name":"o","meta-type":"object","members":[{"name":"a","type":"A"}]}]"#,
        r#"[{"name":"c","meta-type":"command","arg-type":"o","ret-type":"X"},
            {"name":"X","meta-type":"alternate","members":[{"type":"X"},{"type":"L"}]},
            {"name":"L","meta-type":"array","element-type":"X"},
            {"name":"o","meta-type":"object","members":[{"name":"x","type":"X"}]}]"#,
        r#"[{"name":"c","meta-type":"command","arg-type":"U","ret-type":"U"},
            {"name":"E","meta-type":"event","arg-type":"V"},
            {"name":"K","meta-type":"enum","values":["a"]},
            {"name":"U","meta-type":"object","members":[{"name":"k","type":"K"},{"name":"u","type":"U","default":null}],
             "tag":"k","variants":[{"case":"a","type":"V"}]},
            {"name":"V","meta-type":"object","members":[{"name":"k","type":"K"}],
             "tag":"k","variants":[{"case":"a","type":"U"}]}]"#,
    ];

    #[test]
    fn entry_point_holds_on_fixtures_cycles_and_noise() {
        let mut inputs: Vec<Vec<u8>> = vec![include_bytes!("../tests/data/fixture.json").to_vec()];
        inputs.extend(CYCLES.iter().map(|c| c.as_bytes().to_vec()));
        // Every input is also a recipe; these reach the recipe's every choice.
        inputs.extend((1..300).map(|seed| noise(seed, 200, &(0..=255).collect::<Vec<u8>>())));
        inputs.extend((1..100).map(|seed| noise(seed, 120, b"{}[]\",:ant0-1 ")));
        for input in &inputs {
            super::schema(input);
        }
    }

    /// The recipe reaches cycles: some noise makes a schema in which a type refers to itself.
    #[test]
    fn recipes_make_cyclic_schemas() {
        let mut self_referring = 0;
        for seed in 1..300 {
            let input = noise(seed, 200, &(0..=255).collect::<Vec<u8>>());
            let entities = super::Recipe { data: &input, pos: 0 }.entities();
            for entity in entities.as_array().unwrap() {
                let name = &entity["name"];
                let refers = |key: &str| entity[key].as_array().into_iter().flatten().any(|m| &m["type"] == name);
                if &entity["element-type"] == name || refers("members") || refers("variants") {
                    self_referring += 1;
                }
            }
        }
        assert!(self_referring > 20, "only {self_referring} types refer to themselves");
    }
}
