//! The simulated commands: each is registered with QEMU's own description (from the
//! profile's schema, see [`crate::schema`]) and a handler that works on the [`Machine`].

use std::future::ready;

use qmpkit::server::{CommandDef, CommandResult, EnumDef, ErrorClass, MemberDef, QmpError, Registry, RegistryError};
use serde_json::{Map, Value, json};

use crate::machine::{BackupArgs, Machine};
use crate::schema::Reached;

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

/// Fills `registry` with the simulated commands and events, described as the profile's QEMU
/// describes them; with `faults`, adds the downstream commands that trigger guest-side
/// happenings.
pub(crate) fn register(
    registry: &mut Registry,
    reached: &Reached,
    machine: &Machine,
    package: &str,
    faults: bool,
) -> Result<(), RegistryError> {
    registry.fd_commands()?;
    for def in &reached.types {
        registry.type_(def.clone())?;
    }
    for def in &reached.events {
        registry.event(def.clone())?;
    }
    for &name in COMMANDS {
        let Some(def) = reached.commands.get(name) else { continue };
        let machine = machine.clone();
        let package = package.to_owned();
        let name = name.to_owned();
        registry.command_raw(def.clone(), move |_ctx, args| ready(run(&machine, &package, &name, &args)))?;
    }
    if faults {
        register_faults(registry, machine)?;
    }
    Ok(())
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
        "human-monitor-command" => Ok(Value::String(hmp(machine, package, str_arg(args, "command-line")))),
        "qom-list" => machine.qom_list(str_arg(args, "path")),
        "qom-get" => machine.qom_get(str_arg(args, "path"), str_arg(args, "property")),
        "qom-set" => machine
            .qom_set(str_arg(args, "path"), str_arg(args, "property"), args.get("value").unwrap_or(&Value::Null))
            .and_then(|()| empty()),
        "device_add" => {
            machine.device_add(str_arg(args, "driver"), args.get("id").and_then(Value::as_str)).and_then(|()| empty())
        }
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
        "yank" => yank(args),
        "migrate-pause" => {
            Err(QmpError::generic("migrate-pause is currently only supported during postcopy-active state"))
        }
        "migrate-recover" => Err(QmpError::generic("Migrate recover can only be run when postcopy is paused.")),
        other => Err(QmpError::command_not_found(format!("The command {other} has not been found"))),
    }
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

/// The downstream commands that make the guest do things, for testing clients: each
/// triggers what a real guest (or its hardware) would, with the same events.
fn register_faults(registry: &mut Registry, machine: &Machine) -> Result<(), RegistryError> {
    let name = |n: &str| format!("{DOWNSTREAM_PREFIX}{n}");
    let watchdog_actions =
        EnumDef::new(name("WatchdogAction"), ["reset", "shutdown", "poweroff", "pause", "debug", "none", "inject-nmi"]);
    registry.type_(watchdog_actions)?;
    registry.type_(EnumDef::new(name("IoErrorAction"), ["report", "ignore", "stop"]))?;

    type GuestAction = fn(&Machine);
    let simple: [(&str, GuestAction); 4] = [
        ("guest-shutdown", Machine::guest_shutdown),
        ("guest-reset", Machine::guest_reset),
        ("guest-suspend", Machine::guest_suspend),
        ("guest-panic", Machine::guest_panic),
    ];
    for (command, action) in simple {
        let machine = machine.clone();
        registry.command_raw(CommandDef::new(name(command)), move |_ctx, _args| {
            action(&machine);
            ready(Ok(json!({})))
        })?;
    }
    let m = machine.clone();
    registry.command_raw(
        CommandDef::new(name("watchdog")).arg(MemberDef::optional("action", name("WatchdogAction").as_str())),
        move |_ctx, args| {
            m.watchdog(args.get("action").and_then(Value::as_str).unwrap_or("reset"));
            ready(Ok(json!({})))
        },
    )?;
    let m = machine.clone();
    registry.command_raw(
        CommandDef::new(name("rtc-change")).arg(MemberDef::new("offset", "int")),
        move |_ctx, args| {
            m.rtc_change(args.get("offset").and_then(Value::as_i64).unwrap_or_default());
            ready(Ok(json!({})))
        },
    )?;
    let m = machine.clone();
    registry.command_raw(
        CommandDef::new(name("block-io-error"))
            .arg(MemberDef::new("device", "str"))
            .arg(MemberDef::optional("action", name("IoErrorAction").as_str()))
            .arg(MemberDef::optional("nospace", "bool")),
        move |_ctx, args| {
            let action = args.get("action").and_then(Value::as_str).unwrap_or("report");
            let nospace = args.get("nospace").and_then(Value::as_bool).unwrap_or(false);
            ready(m.block_io_error(str_arg(&args, "device"), action, nospace).map(|()| json!({})))
        },
    )?;
    let m = machine.clone();
    registry.command_raw(CommandDef::new(name("job-fail")).arg(MemberDef::new("id", "str")), move |_ctx, args| {
        ready(m.fail_job(str_arg(&args, "id")).map(|()| json!({})))
    })?;
    Ok(())
}
