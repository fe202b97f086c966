//! Tab completion and inline hints from the peer's `query-qmp-schema`: command names,
//! argument names (dotted, nested), enum values, and transaction actions.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use qmpkit_schema::Schema;
use qmpkit_schema::index::{Type, TypeKind};
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::{Context, Helper, Validator};

/// The shell's own words, completed with the commands.
const BUILTINS: &[&str] = &["help", "quit", "reconnect", "transaction("];

/// What completion needs to know, updated by the shell as it goes.
#[derive(Default)]
pub(crate) struct State {
    /// The schema of the peer, once loaded.
    pub(crate) schema: Option<Arc<Schema>>,
    /// Whether a transaction is being typed.
    pub(crate) transaction: bool,
    /// HMP mode: lines are not QMP commands.
    pub(crate) hmp: bool,
    /// HMP's commands and `info` subcommands, read from its `help` (HMP mode only).
    pub(crate) hmp_commands: HmpCommands,
}

/// What HMP's `help` lists: command names (aliases included) and `info` subcommands.
#[derive(Default, Debug, PartialEq)]
pub(crate) struct HmpCommands {
    /// The command names.
    pub(crate) commands: Vec<String>,
    /// The subcommands of `info`.
    pub(crate) info: Vec<String>,
}

impl HmpCommands {
    /// Reads the output of HMP's `help`: one command a line, `name|alias args -- text`,
    /// with continuation lines indented.
    pub(crate) fn from_help(help: &str) -> HmpCommands {
        let mut out = HmpCommands::default();
        for line in help.lines().filter(|l| !l.starts_with(char::is_whitespace)) {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("info") => {
                    if let Some(sub) = words.next().filter(|w| *w != "--") {
                        out.info.push(sub.to_owned());
                    }
                    out.commands.push("info".to_owned());
                }
                Some(names) => out.commands.extend(names.split('|').map(str::to_owned)),
                None => {}
            }
        }
        out.commands.sort();
        out.commands.dedup();
        out.info.sort();
        out.info.dedup();
        out
    }
}

/// The rustyline helper.
#[derive(Helper, Validator)]
pub(crate) struct ShellHelper {
    /// Shared with the shell.
    pub(crate) state: Arc<Mutex<State>>,
    /// Whether hints may be grey.
    pub(crate) color: bool,
}

/// The candidates for `word`, the words before it being `before`.
pub(crate) fn candidates(state: &State, before: &[&str], word: &str) -> Vec<String> {
    if state.hmp {
        let mut out = match before {
            [] => state.hmp_commands.commands.clone(),
            ["info" | "i"] => state.hmp_commands.info.clone(),
            _ => Vec::new(),
        };
        out.retain(|c| c.starts_with(word));
        return out;
    }
    let Some(schema) = state.schema.as_deref() else { return Vec::new() };
    let transaction = state.transaction || before.first() == Some(&"transaction(");
    let before = if !state.transaction && transaction { &before[1..] } else { before };
    let mut out: Vec<String> = match before.first() {
        None if transaction => {
            let mut types: Vec<String> = action_types(schema).into_iter().map(str::to_owned).collect();
            types.push(")".to_owned());
            types
        }
        None => {
            schema.commands().map(|c| c.name().to_owned()).chain(BUILTINS.iter().map(|b| (*b).to_owned())).collect()
        }
        Some(&"help") if before.len() == 1 => schema.commands().map(|c| c.name().to_owned()).collect(),
        Some(first) => {
            let args =
                if transaction { action_data(schema, first) } else { schema.command(first).map(|c| c.arg_type()) };
            match args {
                Some(ty) => arguments(ty, word),
                None => Vec::new(),
            }
        }
    };
    out.retain(|c| c.starts_with(word));
    out.sort();
    out.dedup();
    out
}

/// Completes `key`, `a.b.partial` or `key=partial-value` against an arguments type.
fn arguments(args: Type<'_>, word: &str) -> Vec<String> {
    if let Some((key, _)) = word.split_once('=') {
        let path: Vec<&str> = key.split('.').collect();
        return resolve(args, &path)
            .map(enum_values)
            .unwrap_or_default()
            .into_iter()
            .map(|v| format!("{key}={v}"))
            .collect();
    }
    let mut path: Vec<&str> = word.split('.').collect();
    path.pop();
    let Some(parent) = resolve(args, &path) else { return Vec::new() };
    let prefix: String = path.iter().map(|p| format!("{p}.")).collect();
    member_names(parent)
        .into_iter()
        .map(|name| {
            let nested = resolve(parent, &[name]).is_some_and(|t| !member_names(t).is_empty());
            format!("{prefix}{name}{}", if nested { "." } else { "=" })
        })
        .collect()
}

/// The `type` values of `transaction`'s actions.
fn action_types(schema: &Schema) -> Vec<&str> {
    let Some(actions) = schema.command("transaction").and_then(|c| resolve(c.arg_type(), &["actions", "type"])) else {
        return Vec::new();
    };
    enum_values(actions)
}

/// The type of the `data` of action `kind`: the union variant picked by the tag.
fn action_data<'a>(schema: &'a Schema, kind: &str) -> Option<Type<'a>> {
    let actions = resolve(schema.command("transaction")?.arg_type(), &["actions"])?;
    let element = match actions.kind() {
        TypeKind::Array(element) => element,
        _ => actions,
    };
    let variant = element.as_object()?.variant(kind)?;
    Some(variant.as_object()?.member("data")?.ty())
}

/// Follows member names through objects (and their union variants), arrays and alternates.
/// (The schema crate does this for a command's arguments only; transaction actions need it
/// from a variant's type.)
fn resolve<'a>(mut ty: Type<'a>, path: &[&str]) -> Option<Type<'a>> {
    for segment in path {
        ty = unwrap(ty);
        let object = ty.as_object()?;
        ty = match object.member(segment) {
            Some(m) => m.ty(),
            None => object.variants().find_map(|(_, v)| v.as_object()?.member(segment).map(|m| m.ty()))?,
        };
    }
    Some(unwrap(ty))
}

/// Looks through arrays and alternates to the object or enum inside.
fn unwrap(mut ty: Type<'_>) -> Type<'_> {
    for _ in 0..16 {
        ty = match ty.kind() {
            TypeKind::Array(element) => element,
            TypeKind::Alternate(a) => {
                match a.members().find(|b| matches!(b.kind(), TypeKind::Object(_) | TypeKind::Enum(_))) {
                    Some(branch) => branch,
                    None => return ty,
                }
            }
            _ => return ty,
        };
    }
    ty
}

fn member_names(ty: Type<'_>) -> Vec<&str> {
    let Some(object) = unwrap(ty).as_object() else { return Vec::new() };
    let mut names: Vec<&str> = object.members().map(|m| m.name()).collect();
    for (_, variant) in object.variants() {
        if let Some(v) = variant.as_object() {
            names.extend(v.members().map(|m| m.name()));
        }
    }
    names
}

fn enum_values(ty: Type<'_>) -> Vec<&str> {
    match unwrap(ty).as_enum() {
        Some(e) => e.values().collect(),
        None if matches!(ty.kind(), TypeKind::Builtin(_)) && ty.name() == "bool" => vec!["true", "false"],
        None => Vec::new(),
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let words: Vec<&str> = before[..start].split_whitespace().collect();
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = candidates(&state, &words, &before[start..]);
        let pairs = found
            .into_iter()
            .map(|c| {
                let end = if c.ends_with('=') || c.ends_with('.') || c.ends_with('(') { "" } else { " " };
                Pair { display: c.clone(), replacement: format!("{c}{end}") }
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;

    /// After `command ` (and nothing else yet), the command's arguments, as redis-cli does.
    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<String> {
        if pos != line.len() || !line.ends_with(' ') || line.trim().contains(' ') {
            return None;
        }
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.hmp || state.transaction {
            return None;
        }
        let command = state.schema.as_deref()?.command(line.trim())?;
        let signature = command.signature();
        let args = signature.strip_prefix(command.name())?.strip_prefix('(')?;
        let args = &args[..args.rfind(") -> ")?];
        (!args.is_empty()).then(|| args.to_owned())
    }
}

impl Highlighter for ShellHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.color { Cow::Owned(format!("\x1b[2m{hint}\x1b[0m")) } else { Cow::Borrowed(hint) }
    }
}

#[cfg(test)]
mod tests {
    use qmpkit_schema::builder::{CommandDef, EnumDef, MemberDef, ObjectDef, SchemaBuilder};

    use super::*;

    fn schema() -> Arc<Schema> {
        let mut b = SchemaBuilder::new();
        b.type_(EnumDef::new("Mode", ["fast", "full", "fancy"]))
            .type_(
                ObjectDef::new("Target")
                    .member(MemberDef::new("node", "str"))
                    .member(MemberDef::optional("mode", "Mode")),
            )
            .command(
                CommandDef::new("drive-backup")
                    .arg(MemberDef::new("target", "Target"))
                    .arg(MemberDef::optional("sync", "Mode"))
                    .arg(MemberDef::optional("speed", "int")),
            )
            .command(CommandDef::new("query-status"))
            .command(CommandDef::new("query-name"));
        Arc::new(b.build_schema().unwrap())
    }

    #[test]
    fn commands_arguments_and_values() {
        let state = State { schema: Some(schema()), ..State::default() };
        assert_eq!(candidates(&state, &[], "query-"), ["query-name", "query-status"]);
        assert_eq!(candidates(&state, &[], "re"), ["reconnect"]);
        assert_eq!(candidates(&state, &["drive-backup"], ""), ["speed=", "sync=", "target."]);
        assert_eq!(candidates(&state, &["drive-backup"], "target."), ["target.mode=", "target.node="]);
        assert_eq!(candidates(&state, &["drive-backup"], "sync=f"), ["sync=fancy", "sync=fast", "sync=full"]);
        assert_eq!(candidates(&state, &["drive-backup"], "target.mode=fu"), ["target.mode=full"]);
        assert_eq!(candidates(&state, &["help"], "query-s"), ["query-status"]);
        assert!(candidates(&state, &["nope"], "").is_empty());
        assert!(candidates(&State { hmp: true, ..state }, &[], "q").is_empty(), "HMP has its own commands");
        assert!(candidates(&State::default(), &[], "q").is_empty(), "no schema, no candidates");
    }

    #[test]
    fn hmp_commands_from_help() {
        let help = "balloon target -- request VM to change its memory allocation (in MB)\n\
                    block_job_cancel [-f] device -- stop an active background block operation (use -f\n\
                    \t\t\t if you want to abort the operation immediately\n\
                    c|cont  -- resume emulation\n\
                    info balloon  -- show balloon information\n\
                    info block [-n] [-v] [device] -- show info of one block device\n\
                    info -- show various information about the system state\n";
        let hmp = HmpCommands::from_help(help);
        assert_eq!(hmp.commands, ["balloon", "block_job_cancel", "c", "cont", "info"]);
        assert_eq!(hmp.info, ["balloon", "block"]);
        let state = State { hmp: true, hmp_commands: hmp, ..State::default() };
        assert_eq!(candidates(&state, &[], "b"), ["balloon", "block_job_cancel"]);
        assert_eq!(candidates(&state, &["info"], "bl"), ["block"]);
        assert!(candidates(&state, &["balloon"], "").is_empty());
    }
}
