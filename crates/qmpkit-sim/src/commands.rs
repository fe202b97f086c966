//! The simulated commands: each is registered with QEMU's own description (from the
//! profile's schema, see [`crate::schema`]) and a handler that works on the [`Machine`].

use std::future::ready;
use std::sync::{Arc, Mutex};

use qmpkit::server::{
    CommandDef, CommandResult, Context, EnumDef, ErrorClass, LazyRegistry, MemberDef, QmpError, Registry, RegistryError,
};
use serde_json::{Map, Value, json};

use crate::SimError;
use crate::machine::{BackupArgs, Machine};
use crate::profile::Profile;
use crate::schema::{self, Prepared};

/// The commands the simulator implements, besides the server library's built-ins
/// (`qmp_capabilities`, `query-commands`, `query-qmp-schema`, `query-version` and the fd
/// commands).
pub const COMMANDS: &[&str] = &[
    "query-status",
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "system_wakeup",
    "quit",
    "query-kvm",
    "query-name",
    "query-uuid",
    "query-cpus-fast",
    "query-block",
    "query-balloon",
    "balloon",
    "human-monitor-command",
    "qom-list",
    "qom-get",
    "qom-set",
    "device_add",
    "device_del",
    "query-jobs",
    "job-pause",
    "job-resume",
    "job-cancel",
    "job-complete",
    "job-finalize",
    "job-dismiss",
    "blockdev-backup",
    "query-yank",
    "yank",
    "migrate-pause",
    "migrate-recover",
    "query-cpu-model-expansion",
];

/// The events the simulator emits.
pub const EVENTS: &[&str] = &[
    "SHUTDOWN",
    "POWERDOWN",
    "RESET",
    "STOP",
    "RESUME",
    "SUSPEND",
    "WAKEUP",
    "GUEST_PANICKED",
    "WATCHDOG",
    "RTC_CHANGE",
    "BALLOON_CHANGE",
    "DEVICE_DELETED",
    "JOB_STATUS_CHANGE",
    "BLOCK_JOB_COMPLETED",
    "BLOCK_JOB_CANCELLED",
    "BLOCK_IO_ERROR",
];

/// The prefix of the simulator's own commands, by the QMP specification's rule for
/// downstream extensions (`__RFQDN_`).
pub const DOWNSTREAM_PREFIX: &str = "__org.qmpkit_";

/// The registry of a profile, with or without the fault commands, built once per process
/// on first need and shared by every machine of that profile (each machine is its server's
/// [`Context::data`](qmpkit::server::Context::data)). It is lazy so that a simulator greets
/// its clients at once: describing the commands from QEMU's schema and compiling them takes
/// milliseconds, most of a simulator's start.
pub(crate) fn lazy_registry(profile: &Profile, faults: bool) -> Arc<LazyRegistry> {
    type Cache = Vec<((u64, u64, bool), Arc<LazyRegistry>)>;
    static CACHE: Mutex<Cache> = Mutex::new(Vec::new());
    let key = (profile.major, profile.minor, faults);
    let mut cache = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, registry)) = cache.iter().find(|(k, _)| *k == key) {
        return registry.clone();
    }
    let profile = *profile;
    let lazy = LazyRegistry::new(move || match registry(&profile, faults) {
        Ok(registry) => registry,
        Err(err) => {
            // A bug in this crate (unit tests build every profile's registry): the machine
            // keeps the built-in commands, and the log says why the rest are missing.
            tracing::error!(%profile, error = %err, "the simulated commands did not register");
            Arc::new(Registry::new())
        }
    });
    cache.push((key, lazy.clone()));
    lazy
}

/// Describes and compiles a profile's registry.
fn registry(profile: &Profile, faults: bool) -> Result<Arc<Registry>, SimError> {
    let prepared = schema::prepared(profile)?;
    let mut registry = build(&prepared, faults)?;
    let mut entities = prepared.introspection();
    if faults {
        entities.extend(fault_entities(prepared.schema.empty_type()));
    }
    registry.introspection(entities);
    registry.check()?;
    Ok(Arc::new(registry))
}

/// The simulated commands and events, described as the profile's QEMU describes them; with
/// `faults`, the downstream commands that trigger guest-side happenings too.
pub(crate) fn build(prepared: &Prepared, faults: bool) -> Result<Registry, RegistryError> {
    let mut registry = Registry::new();
    registry.fd_commands()?;
    let reached = &prepared.reached;
    for def in &reached.types {
        registry.type_(def.clone())?;
    }
    for def in &reached.events {
        registry.event(def.clone())?;
    }
    for &name in COMMANDS {
        let Some(def) = reached.commands.get(name) else { continue };
        let handler = move |ctx: Context, args: Map<String, Value>| {
            ready(on_machine(&ctx, |machine| run(machine, &ctx.version().package, name, &args)))
        };
        if name == "device_add" {
            // QEMU declares it `'gen': false` and checks its properties itself.
            registry.command_unchecked(def.clone(), handler)?;
        } else {
            registry.command_raw(def.clone(), handler)?;
        }
    }
    if faults {
        register_faults(&mut registry)?;
    }
    Ok(registry)
}

/// Runs `f` on the server's machine; when the machine exited meanwhile (`quit`, a guest
/// shutdown), the server stops before the reply goes out, as QEMU answers nothing after.
fn on_machine(ctx: &Context, f: impl FnOnce(&Machine) -> CommandResult) -> CommandResult {
    let Some(machine) = ctx.data::<Machine>() else {
        return Err(QmpError::generic("no simulated machine serves this registry"));
    };
    let result = f(machine);
    if machine.has_exited() {
        ctx.exit_server();
    }
    result
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> &'a str {
    args.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// Runs one simulated command on validated arguments.
fn run(machine: &Machine, package: &str, name: &str, args: &Map<String, Value>) -> CommandResult {
    let empty = || Ok(json!({}));
    match name {
        "query-status" => Ok(machine.query_status()),
        "stop" => {
            machine.stop();
            empty()
        }
        "cont" => machine.cont().and_then(|()| empty()),
        "system_reset" => {
            machine.system_reset();
            empty()
        }
        "system_powerdown" => {
            machine.system_powerdown();
            empty()
        }
        "system_wakeup" => machine.system_wakeup().and_then(|()| empty()),
        "quit" => {
            machine.quit();
            empty()
        }
        "query-kvm" => Ok(machine.query_kvm()),
        "query-name" => Ok(machine.query_name()),
        "query-uuid" => Ok(machine.query_uuid()),
        "query-cpus-fast" => Ok(machine.query_cpus_fast()),
        "query-block" => Ok(machine.query_block()),
        "query-balloon" => machine.query_balloon(),
        "balloon" => {
            machine.balloon(args.get("value").and_then(Value::as_i64).unwrap_or_default()).and_then(|()| empty())
        }
        "human-monitor-command" => {
            // The simulated machine has one CPU, as `-M pc`: QEMU refuses any other index.
            if args.get("cpu-index").is_some_and(|i| i.as_i64() != Some(0)) {
                return Err(QmpError::generic("Parameter 'cpu-index' expects a CPU number"));
            }
            Ok(Value::String(hmp(machine, package, str_arg(args, "command-line"))))
        }
        "qom-list" => machine.qom_list(str_arg(args, "path")),
        "qom-get" => machine.qom_get(str_arg(args, "path"), str_arg(args, "property")),
        "qom-set" => machine
            .qom_set(str_arg(args, "path"), str_arg(args, "property"), args.get("value").unwrap_or(&Value::Null))
            .and_then(|()| empty()),
        "device_add" => device_add(machine, args),
        "device_del" => machine.device_del(str_arg(args, "id")).and_then(|()| empty()),
        "query-jobs" => Ok(machine.query_jobs()),
        "job-pause" => machine.job_pause(str_arg(args, "id")).and_then(|()| empty()),
        "job-resume" => machine.job_resume(str_arg(args, "id")).and_then(|()| empty()),
        "job-cancel" => machine.job_cancel(str_arg(args, "id")).and_then(|()| empty()),
        "job-complete" => machine.job_complete(str_arg(args, "id")).and_then(|()| empty()),
        "job-finalize" => machine.job_finalize(str_arg(args, "id")).and_then(|()| empty()),
        "job-dismiss" => machine.job_dismiss(str_arg(args, "id")).and_then(|()| empty()),
        "blockdev-backup" => {
            let args: BackupArgs = serde_json::from_value(Value::Object(args.clone()))
                .map_err(|e| QmpError::generic(format!("Invalid arguments for 'blockdev-backup': {e}")))?;
            machine.blockdev_backup(&args).and_then(|()| empty())
        }
        "query-yank" => Ok(json!([{"type": "chardev", "id": "compat_monitor0"}])),
        "query-cpu-model-expansion" => cpu_model_expansion(args),
        "yank" => yank(args),
        "migrate-pause" => Err(QmpError::generic(machine.profile().migrate_pause_error)),
        "migrate-recover" => Err(QmpError::generic("Migrate recover can only be run when postcopy is paused.")),
        other => Err(QmpError::command_not_found(format!("The command {other} has not been found"))),
    }
}

/// `device_add`, whose arguments QEMU checks as device properties rather than by its schema:
/// scalars stand for their text (`"driver": 1` names the model `1`), and properties beyond
/// `driver` and `id` are accepted, as a device model's own properties would be.
fn device_add(machine: &Machine, args: &Map<String, Value>) -> CommandResult {
    let text = |name: &str| match args.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(if *b { "on" } else { "off" }.to_owned())),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(QmpError::generic(format!("Parameter '{name}' expects a scalar value"))),
    };
    let Some(driver) = text("driver")? else {
        return Err(QmpError::generic("Parameter 'driver' is missing"));
    };
    machine.device_add(&driver, text("id")?.as_deref()).map(|()| json!({}))
}

/// `query-cpu-model-expansion`: the x86 models the simulator knows, expanded to no
/// properties (QEMU lists every CPUID feature; see DIFFERENCES.md).
fn cpu_model_expansion(args: &Map<String, Value>) -> CommandResult {
    const MODELS: [&str; 4] = ["max", "base", "qemu64", "host"];
    let model = args.get("model").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
    if !MODELS.contains(&model) {
        return Err(QmpError::generic(format!("CPU model '{model}' not found")));
    }
    let name = if str_arg(args, "type") == "static" { "base" } else { model };
    Ok(json!({"model": {"name": name, "props": {}}}))
}

/// `yank`: the only instance is the monitor's own chardev, which yanking leaves alone.
fn yank(args: &Map<String, Value>) -> CommandResult {
    let instances = args.get("instances").and_then(Value::as_array).cloned().unwrap_or_default();
    for instance in &instances {
        let known = instance.get("type").and_then(Value::as_str) == Some("chardev")
            && instance.get("id").and_then(Value::as_str) == Some("compat_monitor0");
        if !known {
            return Err(QmpError::new(ErrorClass::DeviceNotFound, "Instance not found"));
        }
    }
    Ok(json!({}))
}

/// The HMP commands the simulator knows, with QEMU's help lines.
const HMP_HELP: &[&str] = &[
    "cont|c  -- resume emulation",
    "help|? [cmd] -- show the help",
    "info [subcommand] -- show various information about the system state",
    "quit|q  -- quit the emulator",
    "stop|s  -- stop emulation",
    "system_powerdown  -- send system power down event",
    "system_reset  -- reset the system",
];

const HMP_INFO_HELP: &[&str] = &[
    "info balloon  -- show balloon information",
    "info kvm  -- show KVM information",
    "info name  -- show the current VM name",
    "info status  -- show the current VM status (running|paused)",
    "info uuid  -- show the current VM UUID",
    "info version  -- show the version of QEMU",
];

fn lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\r\n")).collect()
}

/// `human-monitor-command`: a few HMP commands, with QEMU's output (lines end in `\r\n`,
/// errors are output text, not QMP errors).
fn hmp(machine: &Machine, package: &str, line: &str) -> String {
    let mut words = line.split_whitespace();
    let (Some(command), rest) = (words.next(), words.next()) else { return String::new() };
    let error = |err: QmpError| format!("Error: {}\r\n", err.desc);
    match (command, rest) {
        ("info", None) => lines(HMP_INFO_HELP),
        ("info", Some("status")) => match machine.run_state().as_str() {
            "running" => "VM status: running\r\n".into(),
            "paused" => "VM status: paused\r\n".into(),
            other => format!("VM status: paused ({other})\r\n"),
        },
        ("info", Some("version")) => {
            let p = machine.profile();
            format!("{}.{}.{}{package}\r\n", p.major, p.minor, p.micro)
        }
        ("info", Some("kvm")) => "kvm support: disabled\r\n".into(),
        ("info", Some("name")) => match machine.query_name().get("name").and_then(Value::as_str) {
            Some(name) => format!("{name}\r\n"),
            None => String::new(),
        },
        ("info", Some("uuid")) => {
            format!("{}\r\n", machine.query_uuid()["UUID"].as_str().unwrap_or_default())
        }
        ("info", Some("balloon")) => match machine.query_balloon() {
            Ok(info) => format!("balloon: actual={}\r\n", info["actual"].as_u64().unwrap_or_default() >> 20),
            Err(err) => error(err),
        },
        ("info", Some(other)) => format!("unknown command: 'info {other}'\r\n"),
        ("help" | "?", None) => lines(HMP_HELP),
        ("help" | "?", Some(topic)) => {
            let found: Vec<&str> = HMP_HELP
                .iter()
                .copied()
                .filter(|l| l.split(' ').next().is_some_and(|names| names.split('|').any(|n| n == topic)))
                .collect();
            lines(&found)
        }
        ("stop" | "s", None) => {
            machine.stop();
            String::new()
        }
        ("cont" | "c", None) => machine.cont().map_or_else(error, |()| String::new()),
        ("system_reset", None) => {
            machine.system_reset();
            String::new()
        }
        ("system_powerdown", None) => {
            machine.system_powerdown();
            String::new()
        }
        ("quit" | "q", None) => {
            machine.quit();
            String::new()
        }
        _ => format!("unknown command: '{command}'\r\n"),
    }
}

/// A downstream command's argument: name, type (a builtin or one of [`FAULT_ENUMS`] without
/// the prefix), and whether it is optional.
type FaultArg = (&'static str, &'static str, bool);

/// The enumerations the fault commands use, without [`DOWNSTREAM_PREFIX`].
const FAULT_ENUMS: &[(&str, &[&str])] = &[
    ("WatchdogAction", &["reset", "shutdown", "poweroff", "pause", "debug", "none", "inject-nmi"]),
    ("IoErrorAction", &["report", "ignore", "stop"]),
    ("ErrorClass", &["GenericError", "CommandNotFound", "DeviceNotActive", "DeviceNotFound", "KVMMissingCap"]),
];

/// The downstream commands, without [`DOWNSTREAM_PREFIX`], and their arguments. `hold` and
/// `fail` are test hooks for clients of the protocol rather than guest happenings: `hold`
/// keeps its command running until [`Machine::release_held`], `fail` fails with the error
/// class asked for.
const FAULTS: &[(&str, &[FaultArg])] = &[
    ("guest-shutdown", &[]),
    ("guest-reset", &[]),
    ("guest-suspend", &[]),
    ("guest-panic", &[]),
    ("watchdog", &[("action", "WatchdogAction", true)]),
    ("rtc-change", &[("offset", "int", false)]),
    ("block-io-error", &[("device", "str", false), ("action", "IoErrorAction", true), ("nospace", "bool", true)]),
    ("job-fail", &[("id", "str", false)]),
    ("hold", &[]),
    ("fail", &[("class", "ErrorClass", false)]),
];

fn downstream(name: &str) -> String {
    format!("{DOWNSTREAM_PREFIX}{name}")
}

fn fault_type(ty: &str) -> String {
    if FAULT_ENUMS.iter().any(|(name, _)| *name == ty) { downstream(ty) } else { ty.to_owned() }
}

/// The fault commands' `query-qmp-schema` entries, in QEMU's format; their types keep their
/// (prefixed) names, which cannot clash with QEMU's masked numbers.
fn fault_entities(empty: &str) -> Vec<Value> {
    let mut entities = Vec::new();
    for (name, values) in FAULT_ENUMS {
        let members: Vec<Value> = values.iter().map(|v| json!({"name": v})).collect();
        entities.push(json!({"name": downstream(name), "meta-type": "enum", "members": members, "values": values}));
    }
    for (name, args) in FAULTS {
        let arg_type = if args.is_empty() {
            empty.to_owned()
        } else {
            let members: Vec<Value> = args
                .iter()
                .map(|(arg, ty, optional)| {
                    let mut member = json!({"name": arg, "type": fault_type(ty)});
                    if *optional {
                        member["default"] = Value::Null;
                    }
                    member
                })
                .collect();
            let object = format!("q_obj_{}-arg", downstream(name));
            entities.push(json!({"name": object, "meta-type": "object", "members": members}));
            object
        };
        entities
            .push(json!({"name": downstream(name), "meta-type": "command", "arg-type": arg_type, "ret-type": empty}));
    }
    entities
}

/// Registers the downstream commands that make the guest do things, for testing clients:
/// each triggers what a real guest (or its hardware) would, with the same events.
fn register_faults(registry: &mut Registry) -> Result<(), RegistryError> {
    for (name, values) in FAULT_ENUMS {
        registry.type_(EnumDef::new(downstream(name), values.iter().copied()))?;
    }
    for &(name, args) in FAULTS {
        let mut def = CommandDef::new(downstream(name));
        for &(arg, ty, optional) in args {
            let ty = fault_type(ty);
            def = def.arg(if optional {
                MemberDef::optional(arg, ty.as_str())
            } else {
                MemberDef::new(arg, ty.as_str())
            });
        }
        if name == "hold" {
            registry.command_raw(def, |ctx, _args| {
                let machine = ctx.data::<Machine>().cloned();
                async move {
                    match machine {
                        Some(machine) => {
                            machine.hold().await;
                            Ok(json!({}))
                        }
                        None => Err(QmpError::generic("no simulated machine serves this registry")),
                    }
                }
            })?;
        } else {
            registry.command_raw(def, move |ctx, args| ready(on_machine(&ctx, |m| fault(m, name, &args))))?;
        }
    }
    Ok(())
}

/// Runs one downstream command.
fn fault(machine: &Machine, name: &str, args: &Map<String, Value>) -> CommandResult {
    let empty = |()| json!({});
    match name {
        "guest-shutdown" => machine.guest_shutdown(),
        "guest-reset" => machine.guest_reset(),
        "guest-suspend" => machine.guest_suspend(),
        "guest-panic" => machine.guest_panic(),
        "watchdog" => machine.watchdog(args.get("action").and_then(Value::as_str).unwrap_or("reset")),
        "rtc-change" => machine.rtc_change(args.get("offset").and_then(Value::as_i64).unwrap_or_default()),
        "block-io-error" => {
            let action = args.get("action").and_then(Value::as_str).unwrap_or("report");
            let nospace = args.get("nospace").and_then(Value::as_bool).unwrap_or(false);
            return machine.block_io_error(str_arg(args, "device"), action, nospace).map(empty);
        }
        "job-fail" => return machine.fail_job(str_arg(args, "id")).map(empty),
        "fail" => return Err(QmpError::new(ErrorClass::from_name(str_arg(args, "class")), "failed as asked")),
        other => return Err(QmpError::command_not_found(format!("The command {other} has not been found"))),
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lazy_registry` logs a failure and falls back to the built-in commands; here every
    /// profile's registry must register and compile, with and without the fault commands.
    #[test]
    fn every_profile_registers_and_compiles() {
        for profile in crate::PROFILES {
            for faults in [false, true] {
                let registry = registry(&profile, faults).unwrap_or_else(|e| panic!("{profile} {faults}: {e}"));
                assert!(registry.command_names().any(|n| n == "query-status"));
                assert_eq!(registry.command_names().any(|n| n.starts_with(DOWNSTREAM_PREFIX)), faults);
            }
        }
    }
}
