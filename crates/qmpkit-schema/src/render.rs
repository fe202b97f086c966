//! Human-readable signatures for help texts, and completion candidates for shells.
//!
//! Type names are masked in real schemas (`"0"`, `"1"`, ...), so the structure is rendered
//! instead of the name:
//!
//! * builtins by name: `str`, `int`, `number`, `bool`, `null`, `any`;
//! * enums as their values, `'a'|'b'|'c'`, cut after [`RenderOptions::max_enum_values`] with
//!   the total: `'a'|'b'|… (42 values)`;
//! * arrays as `[T]`;
//! * objects as `{m: T, opt?: U}`, and `{…}` below [`RenderOptions::depth`] levels;
//!   a flat union adds its non-empty variants: `{driver: …, node-name?: str; 'file': {…}}`;
//! * alternates as `(T | U)`.
//!
//! A command renders as `name(arg: T, opt?: U) -> R`; an event as `NAME(member: T)`.
//!
//! A peer's schema may be cyclic (an array of itself, a union that is its own variant) or
//! fan out without end, so every walk here ends: a type that recurs with no object in
//! between is written `…` (an array of itself is `[…]`), renderings are cut past fixed
//! limits, and completions visit each type once.

use std::collections::HashSet;

use crate::index::{Command, Event, ObjectType, Type, TypeKind};

/// Limits that keep rendered signatures short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// How many levels of nested objects to show before writing `{…}`.
    pub depth: usize,
    /// How many enum values to show before cutting the list.
    pub max_enum_values: usize,
    /// How many union variants to show before cutting the list.
    pub max_variants: usize,
}

impl Default for RenderOptions {
    /// Two levels, six enum values, four variants: one readable line for most commands.
    fn default() -> Self {
        RenderOptions { depth: 2, max_enum_values: 6, max_variants: 4 }
    }
}

/// How many types one rendering writes at most before writing `…` instead: a peer's
/// schema may fan out exponentially (an alternate of two arrays of an alternate of two
/// arrays...), and a real QEMU's longest signature needs a few hundred.
const MAX_RENDERED_TYPES: usize = 10_000;

/// How deeply types may nest in one rendering (arrays and alternates count, not only
/// objects) before writing `…`: a peer's schema may chain thousands of arrays.
const MAX_RENDER_NESTING: usize = 64;

/// Renders `ty` as text, within the limits of `opts`.
///
/// Whatever the schema, the rendering ends: a type that contains itself without an object
/// in between (an array of itself, an alternate with itself as a branch) is written `…`
/// where it recurs, objects nest at most [`RenderOptions::depth`] levels, and the text is
/// cut with `…` past fixed limits on nesting and size.
#[must_use]
pub fn render_type(ty: Type<'_>, opts: &RenderOptions) -> String {
    let mut out = String::new();
    Renderer::new(opts).write_type(&mut out, ty, opts.depth);
    out
}

/// One rendering's walk: the limits, and the path of types being written.
struct Renderer<'o> {
    opts: &'o RenderOptions,
    /// How many more types may be written.
    budget: usize,
    /// The types being written, outermost first.
    path: Vec<usize>,
    /// Where in `path` the innermost object's members start: a type that recurs after it
    /// recurs without an object in between, which the object depth cannot bound.
    fence: usize,
}

impl<'o> Renderer<'o> {
    fn new(opts: &'o RenderOptions) -> Self {
        Renderer { opts, budget: MAX_RENDERED_TYPES, path: Vec::new(), fence: 0 }
    }

    fn write_type(&mut self, out: &mut String, ty: Type<'_>, depth: usize) {
        if self.budget == 0 || self.path.len() >= MAX_RENDER_NESTING || self.path[self.fence..].contains(&ty.index) {
            out.push('…');
            return;
        }
        self.budget -= 1;
        self.path.push(ty.index);
        self.write_kind(out, ty, depth);
        self.path.pop();
    }

    fn write_kind(&mut self, out: &mut String, ty: Type<'_>, depth: usize) {
        let opts = self.opts;
        match ty.kind() {
            TypeKind::Builtin(_) | TypeKind::Other => out.push_str(ty.name()),
            TypeKind::Enum(e) => {
                let total = e.len();
                for (i, value) in e.values().take(opts.max_enum_values).enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    out.push('\'');
                    out.push_str(value);
                    out.push('\'');
                }
                if total > opts.max_enum_values {
                    out.push_str(&format!("|… ({total} values)"));
                }
            }
            TypeKind::Array(element) => {
                out.push('[');
                self.write_type(out, element, depth);
                out.push(']');
            }
            TypeKind::Object(o) => {
                if o.members().len() == 0 && o.variants().all(|(_, t)| is_empty_object(t)) {
                    out.push_str("{}");
                } else if depth == 0 {
                    out.push_str("{…}");
                } else {
                    out.push('{');
                    self.write_members(out, o, depth - 1);
                    out.push('}');
                }
            }
            TypeKind::Alternate(a) => {
                out.push('(');
                for (i, branch) in a.members().enumerate() {
                    if i > 0 {
                        out.push_str(" | ");
                    }
                    self.write_type(out, branch, depth);
                }
                out.push(')');
            }
        }
    }

    /// Writes `a: T, b?: U` and, for a union, `; 'case': {…}` per non-empty variant.
    fn write_members(&mut self, out: &mut String, o: ObjectType<'_>, depth: usize) {
        let outer_fence = std::mem::replace(&mut self.fence, self.path.len());
        for (i, member) in o.members().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(member.name());
            if member.optional() {
                out.push('?');
            }
            out.push_str(": ");
            self.write_type(out, member.ty(), depth);
        }
        let variants: Vec<_> = o.variants().filter(|(_, t)| !is_empty_object(*t)).collect();
        for (i, (case, ty)) in variants.iter().enumerate() {
            if i == self.opts.max_variants {
                out.push_str(&format!("; … ({} variants)", variants.len()));
                break;
            }
            out.push_str(&format!("; '{case}': "));
            self.write_type(out, *ty, depth);
        }
        self.fence = outer_fence;
    }
}

fn is_empty_object(ty: Type<'_>) -> bool {
    ty.as_object().is_some_and(|o| o.members().len() == 0 && o.variants().len() == 0)
}

/// The members of an argument object without braces, for `name(...)`.
fn args_text(ty: Type<'_>, opts: &RenderOptions) -> String {
    let mut out = String::new();
    let mut renderer = Renderer::new(opts);
    match ty.as_object() {
        Some(o) => renderer.write_members(&mut out, o, opts.depth.saturating_sub(1)),
        None => renderer.write_type(&mut out, ty, opts.depth),
    }
    out
}

impl Command<'_> {
    /// The command's signature with the default limits, such as
    /// `human-monitor-command(command-line: str, cpu-index?: int) -> str`.
    #[must_use]
    pub fn signature(&self) -> String {
        self.signature_with(&RenderOptions::default())
    }

    /// The command's signature with the given limits.
    #[must_use]
    pub fn signature_with(&self, opts: &RenderOptions) -> String {
        format!("{}({}) -> {}", self.name(), args_text(self.arg_type(), opts), render_type(self.ret_type(), opts))
    }

    /// Member names that may follow `path` in the arguments, for completion: `&[]` gives the
    /// top-level argument names, `&["model"]` the members of argument `model`. Array indices
    /// in the path are optional (`["devices", "0", "id"]` and `["devices", "id"]` agree).
    /// For a flat union the members of every variant are offered, after the base members.
    #[must_use]
    pub fn complete_members(&self, path: &[&str]) -> Vec<&str> {
        resolve(self.arg_type(), path).map(member_names).unwrap_or_default()
    }

    /// The enum values accepted at `path`, for completion (`&["type"]` gives `'static'`,
    /// `'full'`, ...). Arrays and alternates are looked through; empty when the member is
    /// not an enum.
    #[must_use]
    pub fn complete_values(&self, path: &[&str]) -> Vec<&str> {
        resolve(self.arg_type(), path).map(enum_values).unwrap_or_default()
    }
}

impl Event<'_> {
    /// The event's signature, such as `RESET(guest: bool, reason: 'none'|…)`.
    #[must_use]
    pub fn signature(&self) -> String {
        let opts = RenderOptions::default();
        format!("{}({})", self.name(), args_text(self.arg_type(), &opts))
    }
}

/// Follows `path` from `ty` through object members (base and variant), arrays and
/// alternates.
fn resolve<'a>(mut ty: Type<'a>, path: &[&str]) -> Option<Type<'a>> {
    for segment in path {
        let mut hops = 0;
        loop {
            hops += 1;
            if hops > 64 {
                return None;
            }
            match ty.kind() {
                TypeKind::Array(element) => {
                    ty = element;
                    if segment.parse::<usize>().is_ok() {
                        break;
                    }
                }
                TypeKind::Alternate(a) => {
                    ty = a.members().find(|b| matches!(b.kind(), TypeKind::Object(_) | TypeKind::Array(_)))?;
                }
                TypeKind::Object(o) => {
                    ty = find_member(o, segment)?;
                    break;
                }
                _ => return None,
            }
        }
    }
    Some(ty)
}

/// The type of member `name` of `o`, or else of the first variant (searched depth first, in
/// schema order) that has it. Each object is searched once, so a union that is its own
/// variant, or a long chain of variants, costs no recursion.
fn find_member<'a>(o: ObjectType<'a>, name: &str) -> Option<Type<'a>> {
    let mut seen = HashSet::new();
    let mut stack = vec![o];
    while let Some(o) = stack.pop() {
        if !seen.insert(o.index) {
            continue;
        }
        if let Some(m) = o.member(name) {
            return Some(m.ty());
        }
        let variants: Vec<_> = o.variants().filter_map(|(_, v)| v.as_object()).collect();
        stack.extend(variants.into_iter().rev());
    }
    None
}

/// Walks the types reachable from `root` depth first, in schema order, each once, and hands
/// each to `visit`, which returns the types to walk next. Visiting each type once keeps
/// cycles finite and shared types cheap; first visits come in the order a plain recursive
/// walk would first reach them, so results keep that order.
fn walk_once<'a>(root: Type<'a>, mut visit: impl FnMut(Type<'a>) -> Vec<Type<'a>>) {
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(ty) = stack.pop() {
        if seen.insert(ty.index) {
            stack.extend(visit(ty).into_iter().rev());
        }
    }
}

/// The member names of the objects at `ty` (looking through arrays and alternates, and into
/// the object variants of unions), without repeats.
fn member_names(ty: Type<'_>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut seen_names = HashSet::new();
    walk_once(ty, |ty| match ty.kind() {
        TypeKind::Object(o) => {
            out.extend(o.members().map(|m| m.name()).filter(|name| seen_names.insert(*name)));
            o.variants().filter(|(_, v)| v.as_object().is_some()).map(|(_, v)| v).collect()
        }
        TypeKind::Array(element) => vec![element],
        TypeKind::Alternate(a) => a.members().collect(),
        _ => Vec::new(),
    });
    out
}

/// The values of the enums at `ty`, looking through arrays and alternates.
fn enum_values(ty: Type<'_>) -> Vec<&str> {
    let mut out = Vec::new();
    walk_once(ty, |ty| match ty.kind() {
        TypeKind::Enum(e) => {
            out.extend(e.values());
            Vec::new()
        }
        TypeKind::Array(element) => vec![element],
        TypeKind::Alternate(a) => a.members().collect(),
        _ => Vec::new(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::fixture;

    /// Renders the signature of command `name` (or event, when it is one) in the fixture
    /// schema and compares it with `expected`.
    fn check(name: &str, expected: &str) {
        let schema = fixture();
        let got = match schema.command(name) {
            Some(c) => c.signature(),
            None => schema.event(name).expect("in fixture").signature(),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn signatures() {
        check(
            "query-status",
            "query-status() -> {running: bool, singlestep: bool, status: 'debug'|'inmigrate'|'internal-error'|'io-error'|'paused'|'postmigrate'|… (16 values)}",
        );
        check("human-monitor-command", "human-monitor-command(command-line: str, cpu-index?: int) -> str");
        check("qmp_capabilities", "qmp_capabilities(enable?: ['oob']) -> {}");
        check("query-yank", "query-yank() -> [{type: 'block-node'|'chardev'|'migration'}]");
        check("query-version", "query-version() -> {qemu: {major: int, minor: int, micro: int}, package: str}");
        check(
            "query-cpu-model-expansion",
            "query-cpu-model-expansion(type: 'static'|'full', model: {name: str, props?: any}) -> {model: {name: str, props?: any}}",
        );
        check(
            "blockdev-add",
            "blockdev-add(driver: 'file'|'raw'|'null-co'|'qcow2'|'gluster', node-name?: str, read-only?: bool; 'file': {filename: str, locking?: 'static'|'full'}; 'raw': {file: (str | {…}), offset?: int}; 'null-co': {size?: int}) -> {}",
        );
        check("STOP", "STOP()");
        check(
            "RESET",
            "RESET(guest: bool, reason: 'none'|'host-error'|'host-qmp-quit'|'host-qmp-system-reset'|'host-signal'|'host-ui'|… (10 values))",
        );
    }

    #[test]
    fn limits() {
        let schema = fixture();
        let opts = RenderOptions { depth: 1, max_enum_values: 1, max_variants: 1 };
        assert_eq!(
            schema.command("blockdev-add").unwrap().signature_with(&opts),
            "blockdev-add(driver: 'file'|… (5 values), node-name?: str, read-only?: bool; 'file': {…}; … (3 variants)) -> {}"
        );
        assert_eq!(render_type(schema.type_("[int]").unwrap(), &opts), "[int]");
        assert_eq!(render_type(schema.type_("9999").unwrap(), &opts), "9999");
    }

    /// Completes `path` for command `name`: member names, then enum values.
    fn check_completion(name: &str, path: &[&str], members: &[&str], values: &[&str]) {
        let schema = fixture();
        let cmd = schema.command(name).unwrap();
        assert_eq!(cmd.complete_members(path), members, "members of {name} {path:?}");
        assert_eq!(cmd.complete_values(path), values, "values of {name} {path:?}");
    }

    #[test]
    fn completions() {
        check_completion("human-monitor-command", &[], &["command-line", "cpu-index"], &[]);
        check_completion("query-status", &[], &[], &[]);
        check_completion("query-cpu-model-expansion", &["model"], &["name", "props"], &[]);
        check_completion("query-cpu-model-expansion", &["type"], &[], &["static", "full"]);
        check_completion("qmp_capabilities", &["enable"], &[], &["oob"]);
        check_completion("qmp_capabilities", &["enable", "0"], &[], &["oob"]);
        check_completion(
            "blockdev-add",
            &[],
            &["driver", "node-name", "read-only", "filename", "locking", "file", "offset", "size"],
            &[],
        );
        check_completion("blockdev-add", &["driver"], &[], &["file", "raw", "null-co", "qcow2", "gluster"]);
        check_completion("blockdev-add", &["locking"], &[], &["static", "full"]);
        check_completion(
            "blockdev-add",
            &["file"],
            &["driver", "node-name", "read-only", "filename", "locking", "file", "offset", "size"],
            &[],
        );
        check_completion("blockdev-add", &["file", "driver"], &[], &["file", "raw", "null-co", "qcow2", "gluster"]);
        check_completion("blockdev-add", &["nope"], &[], &[]);
        check_completion("set-numbers", &["ints", "x"], &[], &[]);
    }
}
