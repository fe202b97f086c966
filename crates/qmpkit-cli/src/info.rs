//! `qmp info`: what the seed's `vm-info` showed (version, kvm, status, uuid, balloon) and
//! more (name, cpus, block devices, jobs), as a table or as JSON. A query the machine does
//! not support is shown as such.

use qmpkit::{Client, ClientBuilder};
use serde_json::{Map, Value, json};

use crate::common::{self, Failure, OK, Style};

/// The queries, in the order shown.
const QUERIES: &[(&str, &str)] = &[
    ("version", "query-version"),
    ("name", "query-name"),
    ("uuid", "query-uuid"),
    ("status", "query-status"),
    ("kvm", "query-kvm"),
    ("balloon", "query-balloon"),
    ("cpus", "query-cpus-fast"),
    ("block", "query-block"),
    ("jobs", "query-jobs"),
];

/// Arguments of `qmp info`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  qmp info /run/vm1.qmp\n  qmp info ./qmp.sock --json | jq .status\n\n\
With --json, each query's return value, or {\"error\": {\"class\": ..., \"desc\": ...}} when the\n\
machine does not support it.\n\n\
Exit status: 0 ok (an unsupported query is not a failure), 2 connection failure, 64 usage.")]
pub(crate) struct InfoArgs {
    /// The peer: a unix socket path or host:port.
    addr: Option<String>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Indented JSON (with --json).
    #[arg(short, long)]
    pretty: bool,
}

/// Runs `qmp info` and returns the exit status.
pub(crate) fn run(args: InfoArgs) -> i32 {
    common::finish("info", run_inner(args))
}

fn run_inner(args: InfoArgs) -> Result<i32, Failure> {
    common::runtime()?.block_on(async {
        let addr = common::address(args.addr);
        let client = common::connect_target(addr.as_deref(), ClientBuilder::new()).await?;
        let answers = gather(&client).await?;
        client.close().await;
        if args.json {
            common::out(&Style::for_stdout(args.pretty).json(&Value::Object(answers)));
        } else {
            common::out(&table(&answers));
        }
        Ok(OK)
    })
}

/// Runs every query; a refusal becomes `{"error": ...}`, a broken connection fails.
async fn gather(client: &Client) -> Result<Map<String, Value>, Failure> {
    let mut answers = Map::new();
    for (key, query) in QUERIES {
        tracing::debug!(target: "qmp", execute = %query, "->");
        let value = match client.execute(query, Value::Null).await {
            Ok(value) => {
                tracing::debug!(target: "qmp", %value, "<- return");
                value
            }
            Err(err) => match err.qmp_error() {
                Some(e) => json!({"error": {"class": e.class.to_string(), "desc": e.desc}}),
                None => return Err(Failure::from(err)),
            },
        };
        answers.insert((*key).to_owned(), value);
    }
    Ok(answers)
}

/// The answers as `key  value` lines.
fn table(answers: &Map<String, Value>) -> String {
    let width = QUERIES.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = Vec::new();
    for (key, _) in QUERIES {
        let value = answers.get(*key).unwrap_or(&Value::Null);
        let text = match value.get("error") {
            Some(e) => format!(
                "unsupported ({}: {})",
                e["class"].as_str().unwrap_or_default(),
                e["desc"].as_str().unwrap_or_default()
            ),
            None => describe(key, value),
        };
        let mut lines = text.lines();
        out.push(format!("{key:width$}{}", lines.next().unwrap_or_default()));
        out.extend(lines.map(|l| format!("{:width$}{l}", "")));
    }
    out.join("\n")
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// One answer in words.
fn describe(key: &str, v: &Value) -> String {
    match key {
        "version" => {
            let q = &v["qemu"];
            let package = v["package"].as_str().filter(|p| !p.is_empty());
            let version = format!("{}.{}.{}", q["major"], q["minor"], q["micro"]);
            package.map_or(version.clone(), |p| format!("{version} ({p})"))
        }
        "name" => v.get("name").map_or("-".to_owned(), text),
        "uuid" => text(&v["UUID"]),
        "status" => text(&v["status"]),
        "kvm" => format!(
            "{}, {}",
            if v["present"] == true { "present" } else { "absent" },
            if v["enabled"] == true { "enabled" } else { "disabled" }
        ),
        "balloon" => format!("{} bytes", text(&v["actual"])),
        "cpus" => list(v, "none", |cpu| {
            format!(
                "#{} {} thread {}{}",
                text(&cpu["cpu-index"]),
                text(&cpu["qom-path"]),
                text(&cpu["thread-id"]),
                cpu.get("target").map_or(String::new(), |t| format!(" ({})", text(t)))
            )
        }),
        "block" => list(v, "none", |dev| {
            let medium = match dev.get("inserted") {
                Some(ins) => format!(
                    "{} ({}{})",
                    text(&ins["file"]),
                    text(&ins["drv"]),
                    if ins["ro"] == true { ", ro" } else { "" }
                ),
                None => "no medium".to_owned(),
            };
            // The drive's name when it has one (`-drive`), else its device's QOM path.
            let name = match dev["device"].as_str() {
                Some(device) if !device.is_empty() => device.to_owned(),
                _ => text(&dev["qdev"]),
            };
            format!("{name}: {medium}")
        }),
        "jobs" => list(v, "none", |job| {
            format!(
                "{} {} {} {}/{}",
                text(&job["id"]),
                text(&job["type"]),
                text(&job["status"]),
                text(&job["current-progress"]),
                text(&job["total-progress"])
            )
        }),
        _ => text(v),
    }
}

fn list(v: &Value, empty: &str, item: impl Fn(&Value) -> String) -> String {
    match v.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(item).collect::<Vec<_>>().join("\n"),
        Some(_) => empty.to_owned(),
        None => text(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_with_an_unsupported_query() {
        let mut answers = Map::new();
        answers.insert("version".into(), json!({"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""}));
        answers.insert("name".into(), json!({}));
        answers.insert("uuid".into(), json!({"UUID": "00000000-0000-0000-0000-000000000000"}));
        answers.insert("status".into(), json!({"status": "paused", "running": false}));
        answers.insert("kvm".into(), json!({"present": true, "enabled": false}));
        answers.insert(
            "balloon".into(),
            json!({"error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}}),
        );
        answers.insert("cpus".into(), json!([{"cpu-index": 0, "qom-path": "/machine/unattached/device[0]", "thread-id": 7, "target": "x86_64"}, {"cpu-index": 1, "qom-path": "/p", "thread-id": 8}]));
        answers.insert("block".into(), json!([{"device": "", "qdev": "/machine/cd", "removable": true}]));
        answers.insert("jobs".into(), json!([]));
        assert_eq!(
            table(&answers),
            "version  7.2.0\nname     -\nuuid     00000000-0000-0000-0000-000000000000\nstatus   paused\n\
             kvm      present, disabled\nballoon  unsupported (DeviceNotActive: No balloon device has been activated)\n\
             cpus     #0 /machine/unattached/device[0] thread 7 (x86_64)\n         #1 /p thread 8\n\
             block    /machine/cd: no medium\njobs     none"
        );
    }
}
