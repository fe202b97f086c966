//! Schemas whose types refer to themselves, as a peer may send them: every walk (loading,
//! signatures, completion, validation) must end with a clean result or a clean error.
//!
//! Each case runs on a thread with a 256 KiB stack, so that a walk whose recursion follows
//! the cycle (or a long chain) overflows at once, deterministically, instead of depending on
//! the size of the main thread's stack.

use qmpkit_schema::{ArgumentErrorKind, RenderOptions, Schema, render_type};
use serde_json::{Map, Value, json};

/// Runs `f` on a thread with a small stack and hands back its result.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .name("small-stack".into())
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn the small-stack thread")
        .join()
        .expect("the walk neither panicked nor overflowed")
}

/// The builtins and the empty object every case uses, plus `entities`, plus command `c`
/// taking `arg` (an object type name) and returning `ret`.
fn schema_with(arg: &str, ret: &str, entities: Value) -> Value {
    let mut all = vec![
        json!({"name": "c", "meta-type": "command", "arg-type": arg, "ret-type": ret}),
        json!({"name": "E", "meta-type": "event", "arg-type": arg}),
        json!({"name": "str", "meta-type": "builtin", "json-type": "string"}),
        json!({"name": "int", "meta-type": "builtin", "json-type": "int"}),
        json!({"name": "empty", "meta-type": "object", "members": []}),
        json!({"name": "K", "meta-type": "enum", "values": ["a", "b"]}),
    ];
    all.extend(entities.as_array().expect("a list of entities").iter().cloned());
    Value::Array(all)
}

/// What one case expects of command `c`.
struct Expect {
    signature: &'static str,
    /// (path, member names, enum values) triples for completion.
    completions: &'static [(&'static [&'static str], &'static [&'static str], &'static [&'static str])],
    /// (arguments, verdict) pairs: `ok` or QEMU's desc text.
    verdicts: Vec<(Value, &'static str)>,
}

/// Loads `schema` on a small stack, then renders, completes and validates as `expect` says;
/// also renders every type and the event, whose texts are only required to be produced.
fn check(schema: Value, expect: Expect) {
    on_small_stack(move || {
        let schema = Schema::from_value(schema).expect("a cyclic schema still loads");
        let c = schema.command("c").expect("command c");
        assert_eq!(c.signature(), expect.signature);
        for (path, members, values) in expect.completions {
            assert_eq!(&c.complete_members(path), members, "members at {path:?}");
            assert_eq!(&c.complete_values(path), values, "values at {path:?}");
        }
        for (args, expected) in &expect.verdicts {
            let got = match c.validate(args.as_object()) {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.desc().to_owned(),
            };
            assert_eq!(got, *expected, "{args}");
        }
        let event = schema.event("E").expect("event E");
        assert!(event.signature().starts_with("E("));
        let wide = RenderOptions { depth: 50, max_enum_values: 50, max_variants: 50 };
        for ty in schema.types() {
            assert!(!render_type(ty, &wide).is_empty() || ty.as_enum().is_some());
            let _ = ty.validate_value("x", &json!([[{"a": [1]}]]));
        }
    });
}

#[test]
fn array_of_itself() {
    check(
        schema_with(
            "args",
            "A",
            json!([
                {"name": "A", "meta-type": "array", "element-type": "A"},
                {"name": "args", "meta-type": "object", "members": [{"name": "a", "type": "A", "default": null}]},
            ]),
        ),
        Expect {
            signature: "c(a?: […]) -> […]",
            completions: &[(&[], &["a"], &[]), (&["a"], &[], &[]), (&["a", "0", "0"], &[], &[])],
            verdicts: vec![
                (json!({"a": []}), "ok"),
                (json!({"a": [[], [[[]]]]}), "ok"),
                (json!({"a": [[1]]}), "Invalid parameter type for 'a[0][0]', expected: array"),
            ],
        },
    );
}

#[test]
fn alternate_of_itself() {
    check(
        schema_with(
            "args",
            "empty",
            json!([
                {"name": "Alt", "meta-type": "alternate", "members": [{"type": "Alt"}, {"type": "str"}]},
                {"name": "args", "meta-type": "object", "members": [{"name": "x", "type": "Alt"}]},
            ]),
        ),
        Expect {
            signature: "c(x: (… | str)) -> {}",
            completions: &[(&[], &["x"], &[]), (&["x"], &[], &[])],
            verdicts: vec![
                (json!({"x": "s"}), "ok"),
                (json!({"x": 1}), "Invalid parameter type for 'x', expected: Alt"),
            ],
        },
    );
}

#[test]
fn alternate_and_array_refer_back() {
    check(
        schema_with(
            "args",
            "empty",
            json!([
                {"name": "Alt", "meta-type": "alternate", "members": [{"type": "L"}, {"type": "K"}]},
                {"name": "L", "meta-type": "array", "element-type": "Alt"},
                {"name": "args", "meta-type": "object", "members": [{"name": "x", "type": "Alt"}]},
            ]),
        ),
        Expect {
            signature: "c(x: ([…] | 'a'|'b')) -> {}",
            completions: &[(&["x"], &[], &["a", "b"]), (&["x", "0", "0"], &[], &["a", "b"])],
            verdicts: vec![
                (json!({"x": ["a", ["b", []]]}), "ok"),
                (json!({"x": ["a", ["c"]]}), "Parameter 'null' does not accept value 'c'"),
            ],
        },
    );
}

#[test]
fn object_member_of_its_own_type() {
    check(
        schema_with(
            "O",
            "O",
            json!([
                {"name": "O", "meta-type": "object", "members": [
                    {"name": "v", "type": "int"}, {"name": "next", "type": "O", "default": null}]},
            ]),
        ),
        Expect {
            signature: "c(v: int, next?: {v: int, next?: {…}}) -> {v: int, next?: {v: int, next?: {…}}}",
            completions: &[(&[], &["v", "next"], &[]), (&["next", "next", "next"], &["v", "next"], &[])],
            verdicts: vec![
                (json!({"v": 1, "next": {"v": 2, "next": {"v": 3}}}), "ok"),
                (json!({"v": 1, "next": {"v": 2, "next": {}}}), "Parameter 'next.next.v' is missing"),
            ],
        },
    );
}

#[test]
fn union_whose_variant_is_itself() {
    check(
        schema_with(
            "U",
            "empty",
            json!([
                {"name": "U", "meta-type": "object", "members": [{"name": "kind", "type": "K"}],
                 "tag": "kind", "variants": [{"case": "a", "type": "U"}, {"case": "b", "type": "empty"}]},
            ]),
        ),
        Expect {
            signature: "c(kind: 'a'|'b'; 'a': {kind: 'a'|'b'; 'a': {…}}) -> {}",
            completions: &[(&[], &["kind"], &[]), (&["kind"], &[], &["a", "b"]), (&["nope"], &[], &[])],
            verdicts: vec![
                (json!({"kind": "a"}), "ok"),
                (json!({"kind": "b"}), "ok"),
                (json!({"kind": "a", "x": 1}), "Parameter 'x' is unexpected"),
                (json!({}), "Parameter 'kind' is missing"),
            ],
        },
    );
}

#[test]
fn unions_whose_variants_loop() {
    // U1's variant is U2 and U2's is U1: the chain a flattened base would form if it looped.
    check(
        schema_with(
            "U1",
            "empty",
            json!([
                {"name": "U1", "meta-type": "object", "members": [{"name": "kind", "type": "K"}, {"name": "one", "type": "int", "default": null}],
                 "tag": "kind", "variants": [{"case": "a", "type": "U2"}]},
                {"name": "U2", "meta-type": "object", "members": [{"name": "kind", "type": "K"}, {"name": "two", "type": "str"}],
                 "tag": "kind", "variants": [{"case": "a", "type": "U1"}]},
            ]),
        ),
        Expect {
            signature: "c(kind: 'a'|'b', one?: int; 'a': {kind: 'a'|'b', two: str; 'a': {…}}) -> {}",
            completions: &[(&[], &["kind", "one", "two"], &[]), (&["two"], &[], &[])],
            verdicts: vec![
                (json!({"kind": "a", "two": "x", "one": 1}), "ok"),
                (json!({"kind": "a"}), "Parameter 'two' is missing"),
                (json!({"kind": "b", "two": "x"}), "Parameter 'two' is unexpected"),
            ],
        },
    );
}

#[test]
fn objects_that_refer_to_each_other() {
    check(
        schema_with(
            "A",
            "B",
            json!([
                {"name": "A", "meta-type": "object", "members": [{"name": "b", "type": "B"}]},
                {"name": "B", "meta-type": "object", "members": [{"name": "a", "type": "A", "default": null}]},
            ]),
        ),
        Expect {
            signature: "c(b: {a?: {…}}) -> {a?: {b: {…}}}",
            completions: &[(&["b", "a", "b"], &["a"], &[])],
            verdicts: vec![
                (json!({"b": {"a": {"b": {}}}}), "ok"),
                (json!({"b": {"a": {}}}), "Parameter 'b.a.b' is missing"),
            ],
        },
    );
}

/// A chain far longer than any real schema: the walks must not recurse once per link.
#[test]
fn long_chains_do_not_recurse_per_link() {
    const LINKS: usize = 5_000;
    let mut entities = Vec::new();
    for i in 0..LINKS {
        let next = if i + 1 == LINKS { "str".to_owned() } else { format!("a{}", i + 1) };
        entities.push(json!({"name": format!("a{i}"), "meta-type": "array", "element-type": next}));
        let next_union = if i + 1 == LINKS { "empty".to_owned() } else { format!("u{}", i + 1) };
        entities.push(json!({"name": format!("u{i}"), "meta-type": "object",
            "members": [{"name": "kind", "type": "K"}, {"name": format!("m{i}"), "type": "int", "default": null}],
            "tag": "kind", "variants": [{"case": "a", "type": next_union}]}));
    }
    entities.push(json!({"name": "args", "meta-type": "object", "members": [
        {"name": "deep", "type": "a0", "default": null}, {"name": "u", "type": "u0", "default": null}]}));
    let schema = schema_with("args", "empty", Value::Array(entities));
    on_small_stack(move || {
        let schema = Schema::from_value(schema).expect("loads");
        let c = schema.command("c").unwrap();
        let signature = c.signature();
        assert!(signature.starts_with("c(deep?: [[[["), "{signature}");
        assert!(signature.contains('…'), "the rendering is cut: {signature}");
        let members = c.complete_members(&["u"]);
        assert_eq!(members.len(), LINKS + 1, "every member of the chain of variants");
        assert_eq!(members[..3], ["kind", "m0", "m1"]);
        assert_eq!(c.complete_values(&["u", "kind"]), ["a", "b"]);
        let last = format!("m{}", LINKS - 1);
        assert_eq!(c.complete_members(&["u", &last]), [] as [&str; 0]);
        let args = json!({"u": {"kind": "a", last.clone(): 5}});
        assert_eq!(c.validate(args.as_object()), Ok(()));
        let args = json!({"u": {"kind": "a", last.clone(): "x"}});
        assert_eq!(
            c.validate(args.as_object()).unwrap_err().desc(),
            format!("Invalid parameter type for 'u.{last}', expected: integer")
        );
    });
}

/// Exponentially many paths through a small acyclic schema: alternate `t{i}` has two
/// branches, both `[t{i+1}]`. Rendering and completion must stay bounded.
#[test]
fn exponential_fan_out_is_bounded() {
    const LEVELS: usize = 60;
    let mut entities = Vec::new();
    for i in 0..LEVELS {
        let next = format!("l{}", i + 1);
        entities.push(json!({"name": format!("t{i}"), "meta-type": "alternate",
            "members": [{"type": next}, {"type": next}, {"type": "K"}]}));
        entities.push(json!({"name": format!("l{i}"), "meta-type": "array", "element-type": format!("t{i}")}));
    }
    entities.push(json!({"name": format!("l{LEVELS}"), "meta-type": "array", "element-type": "str"}));
    entities.push(json!({"name": "args", "meta-type": "object", "members": [{"name": "t", "type": "t0"}]}));
    let schema = schema_with("args", "empty", Value::Array(entities));
    on_small_stack(move || {
        let schema = Schema::from_value(schema).expect("loads");
        let c = schema.command("c").unwrap();
        let signature = c.signature();
        assert!(signature.len() < 1 << 20, "bounded: {} bytes", signature.len());
        assert!(signature.starts_with("c(t: ([([("), "{signature}");
        assert_eq!(c.complete_values(&["t"]), ["a", "b"]);
        assert_eq!(c.complete_members(&["t"]), [] as [&str; 0]);
        assert_eq!(c.validate(json!({"t": [[["a"]]]}).as_object()), Ok(()));
    });
}

/// A value nested far deeper than QEMU's parser allows is refused with its text, and the
/// walk, which keeps its own stack, checks the deepest value QEMU accepts on a small stack.
#[test]
fn absurdly_deep_values_are_refused() {
    let schema = schema_with(
        "args",
        "empty",
        json!([
            {"name": "A", "meta-type": "array", "element-type": "A"},
            {"name": "O", "meta-type": "object", "members": [{"name": "o", "type": "O", "default": null}]},
            {"name": "args", "meta-type": "object", "members": [
                {"name": "a", "type": "A", "default": null}, {"name": "o", "type": "O", "default": null}]},
        ]),
    );
    on_small_stack(move || {
        let schema = Schema::from_value(schema).expect("loads");
        let c = schema.command("c").unwrap();
        // QEMU's parser takes 1024 levels of nesting. Counting the arguments object as the
        // first, `a` may nest 1023 arrays and `o` 1023 objects: `nest(_, 1022)`.
        for (key, inner) in [("a", "[0]"), ("o", ".o")] {
            let valid = nest(key, 1022);
            assert_eq!(c.validate(valid.as_object()), Ok(()), "{key}");
            take_apart(valid);
            for levels in [1023, 100_000] {
                let invalid = nest(key, levels);
                let err = c.validate(invalid.as_object()).unwrap_err();
                assert_eq!(err.kind(), ArgumentErrorKind::TooDeep);
                assert_eq!(err.desc(), "JSON nesting depth limit exceeded");
                assert_eq!(err.name(), format!("{key}{}", inner.repeat(1023)));
                take_apart(invalid);
            }
        }
    });
}

/// The arguments `{key: v}` where `v` nests `levels + 1` arrays (`a`) or objects (`o`).
/// Built by hand: `json!` would serialize the inner value recursively.
fn nest(key: &str, levels: usize) -> Value {
    let wrap = |value: Value| match key {
        "a" => Value::Array(vec![value]),
        _ => Value::Object(Map::from_iter([("o".to_owned(), value)])),
    };
    let mut value = if key == "a" { json!([]) } else { json!({}) };
    for _ in 0..levels {
        value = wrap(value);
    }
    Value::Object(Map::from_iter([(key.to_owned(), value)]))
}

/// Drops a deeply nested value one level at a time: serde_json drops values recursively.
fn take_apart(mut value: Value) {
    loop {
        let inner = match &mut value {
            Value::Array(items) => items.pop(),
            Value::Object(map) => map.values_mut().next().map(Value::take),
            _ => None,
        };
        match inner {
            Some(inner) => value = inner,
            None => return,
        }
    }
}
