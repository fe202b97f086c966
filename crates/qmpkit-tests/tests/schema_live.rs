//! `qmpkit-schema` against a live QEMU: load the real `query-qmp-schema`, then compare the
//! validator's verdicts and texts with the replies QEMU itself gives to the same bad commands.
//!
//! QMP is spoken over a plain blocking `UnixStream` here (QEMU writes one message per line),
//! so the test depends only on the launcher and the schema crate.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use qmpkit::launch::{Instance, Launcher};
use qmpkit_schema::Schema;
use serde_json::{Value, json};

/// A blocking QMP connection, one JSON message per line.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    /// Connects and reads the greeting; negotiates capabilities when `negotiate` is set.
    fn open(socket: &Path, negotiate: bool) -> Conn {
        let stream = UnixStream::connect(socket).expect("connect to the QMP socket");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut conn = Conn { reader: BufReader::new(stream), writer };
        let greeting = conn.read();
        assert!(greeting.get("QMP").is_some(), "not a greeting: {greeting}");
        if negotiate {
            let reply = conn.call(&json!({"execute": "qmp_capabilities"}));
            assert_eq!(reply, json!({"return": {}}));
        }
        conn
    }

    /// Reads the next message that is not an event.
    fn read(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read from QEMU");
            assert!(n > 0, "QEMU closed the connection");
            assert!(line.ends_with("\r\n"), "QEMU's lines end in CRLF: {line:?}");
            let value: Value = serde_json::from_str(&line).expect("QEMU sent JSON");
            if value.get("event").is_none() {
                return value;
            }
        }
    }

    /// Sends one command and returns its reply.
    fn call(&mut self, command: &Value) -> Value {
        let mut text = command.to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).expect("write to QEMU");
        self.read()
    }

    /// Sends `command` with `arguments` and returns the error desc, or `None` on success.
    fn error_desc(&mut self, command: &str, arguments: &Value) -> Option<String> {
        let reply = self.call(&json!({"execute": command, "arguments": arguments}));
        let error = reply.get("error")?;
        assert_eq!(error["class"], "GenericError", "{command} {arguments}: {reply}");
        Some(error["desc"].as_str().unwrap().to_owned())
    }
}

fn start(launcher: &Launcher, what: &str) -> Instance {
    launcher
        .start()
        .unwrap_or_else(|err| panic!("could not start {what}; the live schema tests need the installed QEMU: {err}"))
}

/// Fetches and loads `query-qmp-schema` over a negotiated connection.
fn fetch_schema(conn: &mut Conn) -> Schema {
    let reply = conn.call(&json!({"execute": "query-qmp-schema"}));
    let entities = reply.get("return").expect("query-qmp-schema succeeds").clone();
    Schema::from_value(entities).expect("the live schema loads")
}

/// Our verdict for `command` with `arguments`: `None` when valid, else the desc text.
fn our_desc(schema: &Schema, command: &str, arguments: &Value) -> Option<String> {
    let cmd = schema.command(command).unwrap_or_else(|| panic!("{command} is in the schema"));
    cmd.validate(arguments.as_object()).err().map(|e| e.desc().to_owned())
}

/// Sends every command of the schema with one unknown key and compares QEMU's error with
/// ours. Nothing runs: QEMU rejects the arguments before calling any handler (a missing
/// mandatory member first, else the unknown key). Returns how many were compared.
fn compare_bogus_key_for_every_command(conn: &mut Conn, schema: &Schema) -> usize {
    let args = json!({"zzz-not-a-member": 1});
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for cmd in schema.commands() {
        // qmp_capabilities is refused after negotiation, before its arguments are checked.
        if cmd.name() == "qmp_capabilities" {
            continue;
        }
        let theirs = conn.error_desc(cmd.name(), &args);
        let ours = our_desc(schema, cmd.name(), &args);
        if theirs.is_none() {
            panic!("QEMU ran {} with an unknown argument", cmd.name());
        }
        if theirs != ours {
            mismatches.push(format!("{}: QEMU {theirs:?}, ours {ours:?}", cmd.name()));
        }
        compared += 1;
    }
    assert!(mismatches.is_empty(), "verdicts differ:\n{}", mismatches.join("\n"));
    compared
}

#[test]
fn system_emulator_schema_and_validation_match_qemu() {
    let qemu = start(&Launcher::system(), "qemu-system-x86_64");
    let mut conn = Conn::open(qemu.qmp_socket(), true);
    let schema = fetch_schema(&mut conn);

    // Plausible size (7.2.22: 216 commands, 52 events, 783 types; 10.0.2: more).
    let (commands, events, types) = (schema.commands().len(), schema.events().len(), schema.types().count());
    assert!(commands > 150, "{commands} commands");
    assert!(events > 30, "{events} events");
    assert!(types > 500, "{types} types");
    assert!(schema.command("query-yank").unwrap().allow_oob());
    let oob: Vec<_> = schema.commands_allowing_oob().map(|c| c.name()).collect();
    for name in ["migrate-recover", "migrate-pause", "yank", "query-yank"] {
        assert!(oob.contains(&name), "{name} allows OOB: {oob:?}");
    }
    assert!(!schema.command("query-version").unwrap().allow_oob());
    // Commands without arguments reference the empty object, as QEMU's q_empty.
    let stop = schema.command("stop").unwrap();
    assert_eq!(stop.arg_type().name(), schema.command("query-status").unwrap().arg_type().name());
    assert_eq!(stop.arg_type().as_object().unwrap().members().len(), 0);
    assert_eq!(
        schema.command("human-monitor-command").unwrap().signature(),
        "human-monitor-command(command-line: str, cpu-index?: int) -> str"
    );
    // qmp_capabilities is in the schema, with an optional array of QMPCapability.
    let caps = schema.command("qmp_capabilities").unwrap();
    assert_eq!(caps.complete_values(&["enable"]), ["oob"]);

    // The cases of 15_18_command_errors.txt: our text, QEMU's text, both equal.
    let cases = [
        (
            "human-monitor-command",
            json!({"command-line": 42}),
            "Invalid parameter type for 'command-line', expected: string",
        ),
        (
            "query-cpu-model-expansion",
            json!({"type": 5, "model": {"name": "max"}}),
            "Invalid parameter type for 'type', expected: string",
        ),
        ("query-version", json!({"foo": 1}), "Parameter 'foo' is unexpected"),
        (
            "human-monitor-command",
            json!({"command-line": "info status", "bogus": true}),
            "Parameter 'bogus' is unexpected",
        ),
        ("human-monitor-command", json!({}), "Parameter 'command-line' is missing"),
        (
            "query-cpu-model-expansion",
            json!({"type": "bogus", "model": {"name": "max"}}),
            "Parameter 'type' does not accept value 'bogus'",
        ),
        // Nested names, checked live too.
        ("query-cpu-model-expansion", json!({"type": "full", "model": {}}), "Parameter 'model.name' is missing"),
        (
            "query-cpu-model-expansion",
            json!({"type": "full", "model": {"name": "max", "x": 1}}),
            "Parameter 'model.x' is unexpected",
        ),
        (
            "blockdev-add",
            json!({"driver": "raw", "node-name": "n", "file": {"driver": "file"}}),
            "Parameter 'file.filename' is missing",
        ),
        (
            "blockdev-add",
            json!({"driver": "file", "filename": "/x", "locking": "maybe"}),
            "Parameter 'locking' does not accept value 'maybe'",
        ),
        ("blockdev-add", json!({"driver": "null-co", "filename": "/x"}), "Parameter 'filename' is unexpected"),
        (
            "human-monitor-command",
            json!({"command-line": "x", "cpu-index": 1.5}),
            "Invalid parameter type for 'cpu-index', expected: integer",
        ),
        (
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "xbzrle", "state": "on"}]}),
            "Invalid parameter type for 'capabilities[0].state', expected: boolean",
        ),
        (
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "nope", "state": true}]}),
            "Parameter 'capability' does not accept value 'nope'",
        ),
        (
            "migrate-set-capabilities",
            json!({"capabilities": [1]}),
            "Invalid parameter type for 'capabilities[0]', expected: object",
        ),
    ];
    for (command, args, expected) in &cases {
        assert_eq!(our_desc(&schema, command, args).as_deref(), Some(*expected), "ours: {command} {args}");
        assert_eq!(conn.error_desc(command, args).as_deref(), Some(*expected), "QEMU: {command} {args}");
    }
    // No `arguments` member at all.
    assert_eq!(
        schema.command("human-monitor-command").unwrap().validate(None).unwrap_err().desc(),
        "Parameter 'command-line' is missing"
    );
    // Valid arguments pass both.
    let ok = json!({"command-line": "info status"});
    assert_eq!(our_desc(&schema, "human-monitor-command", &ok), None);
    assert_eq!(conn.error_desc("human-monitor-command", &ok), None);

    // Texts the builder reproduces but a loaded schema cannot (introspection hides integer
    // widths and masks alternate names): QEMU's words, as the builder emits them.
    assert_eq!(
        conn.error_desc("migrate-set-parameters", &json!({"cpu-throttle-initial": 300})).as_deref(),
        Some("Parameter 'cpu-throttle-initial' expects uint8_t")
    );
    assert_eq!(
        conn.error_desc("migrate-set-parameters", &json!({"cpu-throttle-initial": -1})).as_deref(),
        Some("Parameter 'cpu-throttle-initial' expects uint8_t")
    );
    assert_eq!(
        conn.error_desc("migrate-set-parameters", &json!({"max-bandwidth": 1.5})).as_deref(),
        Some("Parameter 'max-bandwidth' expects uint64")
    );
    assert_eq!(our_desc(&schema, "migrate-set-parameters", &json!({"cpu-throttle-initial": 300})), None);
    // The builder, told the widths, gives QEMU's texts.
    let mut builder = qmpkit_schema::SchemaBuilder::new();
    builder.command(
        qmpkit_schema::CommandDef::new("migrate-set-parameters")
            .arg(qmpkit_schema::MemberDef::optional("cpu-throttle-initial", "uint8"))
            .arg(qmpkit_schema::MemberDef::optional("max-bandwidth", "size")),
    );
    let built = builder.build_schema().unwrap();
    for args in
        [json!({"cpu-throttle-initial": 300}), json!({"cpu-throttle-initial": -1}), json!({"max-bandwidth": 1.5})]
    {
        assert_eq!(
            our_desc(&built, "migrate-set-parameters", &args),
            conn.error_desc("migrate-set-parameters", &args),
            "{args}"
        );
    }
    let alt_args = json!({"driver": "raw", "node-name": "n", "file": true});
    assert_eq!(
        conn.error_desc("blockdev-add", &alt_args).as_deref(),
        Some("Invalid parameter type for 'file', expected: BlockdevRef")
    );
    let ours = our_desc(&schema, "blockdev-add", &alt_args).unwrap();
    assert!(ours.starts_with("Invalid parameter type for 'file', expected: "), "{ours}");

    // Every command, with one unknown key.
    let compared = compare_bogus_key_for_every_command(&mut conn, &schema);
    assert_eq!(compared, commands - 1);
    drop(conn);

    // 03_qmp_capabilities_oob.txt, on fresh connections (still negotiating after an error).
    let mut fresh = Conn::open(qemu.qmp_socket(), false);
    for (args, expected) in [
        (json!({"enable": ["bogus"]}), "Parameter 'null' does not accept value 'bogus'"),
        (json!({"enable": "oob"}), "Invalid parameter type for 'enable', expected: array"),
        (json!({"enable": ["oob", 7]}), "Invalid parameter type for 'enable[1]', expected: string"),
    ] {
        assert_eq!(our_desc(&schema, "qmp_capabilities", &args).as_deref(), Some(expected));
        assert_eq!(fresh.error_desc("qmp_capabilities", &args).as_deref(), Some(expected));
    }
    assert_eq!(our_desc(&schema, "qmp_capabilities", &json!({"enable": []})), None);
    assert_eq!(fresh.error_desc("qmp_capabilities", &json!({"enable": []})), None);
}

#[test]
fn storage_daemon_schema_loads_and_matches() {
    let daemon = start(&Launcher::storage_daemon(), "qemu-storage-daemon");
    let mut conn = Conn::open(daemon.qmp_socket(), true);
    let schema = fetch_schema(&mut conn);
    let commands = schema.commands().len();
    assert!(commands > 50, "{commands} commands");
    assert!(schema.command("blockdev-add").is_some());
    assert!(schema.command("query-status").is_none(), "the daemon has no VM state");
    assert!(schema.types().count() > 200);
    let roundtrip = Schema::from_value(schema.to_value()).unwrap();
    assert_eq!(roundtrip.infos(), schema.infos());
    let compared = compare_bogus_key_for_every_command(&mut conn, &schema);
    assert_eq!(compared, commands - 1);
}
