//! `qmp shell`: qmp-shell's syntax and options, with completion, help and validation from the
//! peer's schema, events shown the moment they arrive, and `reconnect`.
//!
//! On a terminal, rustyline reads lines on a thread of its own while the runtime runs the
//! commands and prints events above the prompt through rustyline's external printer. When
//! stdin is not a terminal, each line is one command and each reply one line of output.

mod complete;
mod line;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use qmpkit::CallOptions;
use qmpkit::{Client, ClientBuilder, EventFilter, EventItem};
use qmpkit_schema::Schema;
use rustyline::ExternalPrinter;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::common::{self, FAILED, Failure, OK, REFUSED, Style};
use line::{Input, LineReader};

/// The options qmp-shell has, shared by `qmp shell` and `qmp wrap`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ShellOptions {
    /// HMP mode: every line goes through human-monitor-command (`cpu N` picks the CPU).
    #[arg(short = 'H', long)]
    hmp: bool,
    /// Skip the qmp_capabilities negotiation (type it yourself).
    #[arg(short = 'N', long = "skip-negotiation")]
    no_negotiation: bool,
    /// Indented JSON even when piped.
    #[arg(short, long)]
    pretty: bool,
    /// Append every exchange (command and reply as one JSON object) and event to FILE.
    #[arg(short = 'l', long = "logfile", value_name = "FILE")]
    log: Option<PathBuf>,
    /// With stdin not a terminal: go on after a command fails (the exit status still says so).
    #[arg(long)]
    keep_going: bool,
}

/// Arguments of `qmp shell`.
#[derive(Debug, clap::Args)]
#[command(after_help = "ADDR is a unix socket path or host:port; without it, $QMP_SOCKET.\n\
Lines are `command key=value ...` (qmp-shell's rules), a raw JSON object, `transaction(` ... `)`,\n\
`help [COMMAND]`, `reconnect` or `quit`. Tab completes commands, arguments and enum values.\n\n\
Examples:\n  qmp shell /run/vm1.qmp\n  qmp shell -H localhost:4444\n  echo 'query-status' | qmp shell ./qmp.sock\n\n\
Exit status (stdin not a terminal): 0 every command succeeded, 1 one failed, 2 the connection failed.")]
pub(crate) struct ShellArgs {
    /// The peer: a unix socket path or host:port.
    addr: Option<String>,
    #[command(flatten)]
    options: ShellOptions,
}

/// How the shell reaches its peer again.
#[derive(Clone)]
pub(crate) enum Target {
    /// Connect to this address (none: see `common::connect_target`).
    Connect(Option<String>),
    /// The peer connected to us (`qmp wrap`); there is nothing to reconnect to.
    Accepted,
}

/// Where output goes: stdout, or above the prompt.
#[derive(Clone)]
struct Printer {
    external: Option<Arc<Mutex<Box<dyn ExternalPrinter + Send>>>>,
}

impl Printer {
    fn line(&self, text: String) {
        match &self.external {
            Some(printer) => {
                let mut printer = printer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if printer.print(format!("{text}\n")).is_err() {
                    common::out(&text);
                }
            }
            None => common::out(&text),
        }
    }
}

/// One shell session over successive connections.
struct Session {
    target: Target,
    options: ShellOptions,
    echo: bool,
    style: Style,
    interactive: bool,
    client: Option<Client>,
    /// Set when the current connection's end has been reported, so it is said once.
    ended: Arc<AtomicBool>,
    completion: Arc<Mutex<complete::State>>,
    printer: Printer,
    log: Option<Arc<Mutex<std::fs::File>>>,
    cpu: Option<i64>,
    /// SIGINT, caught from the start so that a Ctrl-C just after a command is sent cannot
    /// end the shell; only on a terminal.
    interrupts: Option<tokio::signal::unix::Signal>,
}

/// Runs `qmp shell` and returns the exit status.
pub(crate) fn run(args: ShellArgs, verbose: u8) -> i32 {
    let addr = common::address(args.addr);
    common::finish(
        "shell",
        common::runtime().and_then(|rt| {
            rt.block_on(async {
                let client = common::connect_target(addr.as_deref(), builder(&args.options)).await?;
                run_session(client, Target::Connect(addr), args.options, verbose).await
            })
        }),
    )
}

/// The client settings the shell wants: no deadline on commands (Ctrl-C cancels one).
pub(crate) fn builder(options: &ShellOptions) -> ClientBuilder {
    let builder = ClientBuilder::new().call_timeout(None);
    if options.no_negotiation { builder.no_negotiation() } else { builder }
}

/// Runs the shell on a connected client until the user leaves; returns the exit status.
///
/// # Errors
/// [`Failure::Failed`] when the log file cannot be opened.
pub(crate) async fn run_session(
    client: Client,
    target: Target,
    options: ShellOptions,
    verbose: u8,
) -> Result<i32, Failure> {
    let interactive = std::io::stdin().is_terminal();
    let log = match &options.log {
        Some(path) => Some(Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Failure::Failed(format!("cannot open the log {}: {e}", path.display())))?,
        ))),
        None => None,
    };
    let completion = Arc::new(Mutex::new(complete::State { hmp: options.hmp, ..complete::State::default() }));
    let mut session = Session {
        target,
        echo: verbose > 0,
        style: Style::for_stdout(options.pretty),
        options,
        interactive,
        client: None,
        ended: Arc::new(AtomicBool::new(false)),
        completion,
        printer: Printer { external: None },
        log,
        cpu: None,
        interrupts: None,
    };
    if interactive { session.interactive_loop(client).await } else { session.piped_loop(client).await }
}

impl Session {
    /// Takes a new connection: loads the schema, starts printing its events, says hello.
    async fn attach(&mut self, client: Client, announce: bool) {
        let banner = match client.greeting().and_then(|g| g.version.as_ref()) {
            Some(v) => format!("Connected to QEMU {}", v.qemu),
            None => "Connected".to_owned(),
        };
        let schema = if self.options.no_negotiation || self.options.hmp {
            None
        } else {
            match client.query_qmp_schema().await {
                Ok(schema) => Some(Arc::new(schema)),
                Err(e) => {
                    eprintln!("qmp shell: no schema, so no completion or checks: {e}");
                    None
                }
            }
        };
        let hmp_commands = if self.options.hmp {
            // `help` lists the commands, `help info` the subcommands of `info`.
            let mut help = String::new();
            for topic in ["help", "help info"] {
                if let Ok(text) = client.human_monitor_command(topic).await {
                    help.push_str(&text);
                }
            }
            complete::HmpCommands::from_help(&help)
        } else {
            complete::HmpCommands::default()
        };
        {
            let mut completion = self.lock_completion();
            completion.schema = schema;
            completion.hmp_commands = hmp_commands;
        }
        self.ended = Arc::new(AtomicBool::new(false));
        self.spawn_events(&client);
        self.client = Some(client);
        if announce {
            common::out(&banner);
        }
    }

    fn lock_completion(&self) -> std::sync::MutexGuard<'_, complete::State> {
        self.completion.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn schema(&self) -> Option<Arc<Schema>> {
        self.lock_completion().schema.clone()
    }

    /// Prints each event the moment it arrives, and the end of the connection once.
    fn spawn_events(&self, client: &Client) {
        let mut events = client.subscribe(EventFilter::all());
        let printer = self.printer.clone();
        let style = Style { pretty: false, ..self.style };
        let ended = self.ended.clone();
        let log = self.log.clone();
        let interactive = self.interactive;
        tokio::spawn(async move {
            while let Some(item) = events.next().await {
                match item {
                    EventItem::Event(event) => {
                        let value = event.to_value();
                        write_log(log.as_ref(), &value);
                        printer.line(style.json(&value));
                    }
                    EventItem::Lagged { missed } => printer.line(format!("({missed} events were dropped here)")),
                }
            }
            if interactive && !ended.swap(true, Ordering::SeqCst) {
                let reason = events.end_reason().map_or_else(|| "closed".to_owned(), |r| r.to_string());
                printer.line(format!("qmp shell: {reason}; `reconnect` connects again, Ctrl-D leaves"));
            }
        });
    }

    async fn interactive_loop(&mut self, client: Client) -> Result<i32, Failure> {
        let helper = complete::ShellHelper { state: self.completion.clone(), color: self.style.color };
        let config = rustyline::Config::builder()
            .auto_add_history(true)
            // Tab completes the common part, a second Tab lists the candidates, as in bash.
            .completion_type(rustyline::CompletionType::List)
            .max_history_size(1000)
            .map_err(|e| Failure::Failed(format!("cannot set up the line editor: {e}")))?
            .build();
        let mut editor: rustyline::Editor<complete::ShellHelper, rustyline::history::FileHistory> =
            rustyline::Editor::with_config(config)
                .map_err(|e| Failure::Failed(format!("cannot set up the line editor: {e}")))?;
        editor.set_helper(Some(helper));
        let history = history_path();
        if let Some(path) = &history {
            // A missing history file is the first session.
            let _ = editor.load_history(path);
        }
        if let Ok(printer) = editor.create_external_printer() {
            self.printer = Printer { external: Some(Arc::new(Mutex::new(Box::new(printer)))) };
        }
        self.interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        common::out("Welcome to the QMP low-level shell!");
        self.attach(client, true).await;
        common::out("Type `help` for commands and `help COMMAND` for one; Tab completes; Ctrl-D leaves.");

        let (prompts, prompt_rx) = std::sync::mpsc::channel::<String>();
        let (line_tx, mut lines) = mpsc::channel::<Option<Result<String, ()>>>(1);
        std::thread::spawn(move || {
            while let Ok(prompt) = prompt_rx.recv() {
                let read = match editor.readline(&prompt) {
                    Ok(line) => {
                        // Appended line by line, so that concurrent sessions keep each
                        // other's lines and a killed session loses none.
                        if let Some(path) = &history {
                            let _ = editor.append_history(path);
                        }
                        Some(Ok(line))
                    }
                    Err(rustyline::error::ReadlineError::Interrupted) => Some(Err(())),
                    Err(_) => None,
                };
                if line_tx.blocking_send(read).is_err() {
                    break;
                }
            }
        });
        let mut reader = LineReader::default();
        loop {
            let prompt = if reader.in_transaction() {
                "TRANS> "
            } else if self.options.hmp {
                "(QEMU-HMP) "
            } else {
                "(QEMU) "
            };
            if prompts.send(prompt.to_owned()).is_err() {
                break;
            }
            match lines.recv().await.flatten() {
                None => break,
                Some(Err(())) => {
                    if reader.cancel_transaction() {
                        common::out("(transaction dropped)");
                    }
                }
                Some(Ok(text)) => {
                    if let Step::Quit = self.handle(&mut reader, &text).await {
                        break;
                    }
                }
            }
            self.lock_completion().transaction = reader.in_transaction();
        }
        if let Some(client) = self.client.take() {
            self.ended.store(true, Ordering::SeqCst);
            client.close().await;
        }
        Ok(OK)
    }

    async fn piped_loop(&mut self, client: Client) -> Result<i32, Failure> {
        self.attach(client, false).await;
        // Lines are read on a thread: stdin may be a file, which async IO cannot wait for.
        let (tx, mut stdin) = mpsc::channel::<std::io::Result<String>>(16);
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        let mut reader = LineReader::default();
        let mut status = OK;
        while let Some(text) = stdin.recv().await {
            let text = text.map_err(|e| Failure::Failed(format!("reading stdin: {e}")))?;
            match self.handle(&mut reader, &text).await {
                Step::Quit => break,
                Step::Done => {}
                Step::Failed(code) => {
                    status = status.max(code);
                    if code == FAILED || !self.options.keep_going {
                        break;
                    }
                }
            }
        }
        if let Some(client) = self.client.take() {
            client.close().await;
        }
        Ok(status)
    }

    /// Does what one line says.
    async fn handle(&mut self, reader: &mut LineReader, text: &str) -> Step {
        if self.options.hmp && !text.trim().is_empty() && !matches!(text.trim(), "quit" | "reconnect") {
            return self.hmp(text.trim()).await;
        }
        let input = match reader.read(text) {
            Ok(input) => input,
            Err(message) => {
                eprintln!("{}", self.paint_error(&message));
                return Step::Failed(REFUSED);
            }
        };
        match input {
            Input::Nothing => Step::Done,
            Input::Quit => Step::Quit,
            Input::Help(name) => {
                common::out(&self.help(name.as_deref()));
                Step::Done
            }
            Input::Reconnect => self.reconnect().await,
            // Raw JSON goes to QEMU as typed, so QEMU judges it (the line reader only lets
            // objects through).
            Input::Raw(Value::Object(object)) => self.send(object).await,
            Input::Raw(_) => {
                eprintln!("{}", self.paint_error("a raw message must be a JSON object"));
                Step::Failed(REFUSED)
            }
            Input::Execute { name, arguments } => {
                if let Some(schema) = self.schema()
                    && let Err((class, desc)) = check(&schema, &name, &arguments)
                {
                    eprintln!("{}", self.paint_error(&format!("{class}: {desc} (not sent)")));
                    return Step::Failed(REFUSED);
                }
                let mut command = Map::new();
                command.insert("execute".to_owned(), Value::String(name));
                if !arguments.is_empty() {
                    command.insert("arguments".to_owned(), Value::Object(arguments));
                }
                self.send(command).await
            }
        }
    }

    /// The client, unless its connection has ended (then it is forgotten).
    fn live_client(&mut self) -> Option<Client> {
        if self.client.as_ref().is_some_and(|c| c.closed_reason().is_some()) {
            self.client = None;
        }
        self.client.clone()
    }

    fn paint_error(&self, text: &str) -> String {
        if self.style.color && self.interactive { format!("\x1b[31m{text}\x1b[0m") } else { text.to_owned() }
    }

    /// Sends a command, waits for its reply (Ctrl-C stops waiting), prints and logs it.
    async fn send(&mut self, command: Map<String, Value>) -> Step {
        let Some(client) = self.live_client() else {
            eprintln!("{}", self.paint_error("not connected: type `reconnect`"));
            return Step::Failed(FAILED);
        };
        let sent = Value::Object(command.clone());
        let own_id = !command.contains_key("id");
        if self.echo {
            common::out(&self.style.json(&sent));
        }
        tracing::debug!(target: "qmp", %sent, "->");
        let Some(reply) = self.interruptible(client.execute_raw_object(command, CallOptions::new())).await else {
            return Step::Failed(REFUSED);
        };
        match reply {
            Ok(response) => {
                let mut received = response.to_value();
                tracing::debug!(target: "qmp", %received, "<-");
                if own_id {
                    // The id is the client's own bookkeeping, not something the user asked for.
                    if let Value::Object(reply) = &mut received {
                        reply.remove("id");
                    }
                }
                common::out(&self.style.json(&received));
                if let (Value::Object(exchange), Value::Object(reply)) = (&mut sent.clone(), &mut received) {
                    exchange.append(reply);
                    write_log(self.log.as_ref(), &Value::Object(exchange.clone()));
                }
                if response.result.is_ok() { Step::Done } else { Step::Failed(REFUSED) }
            }
            Err(err) => self.failed(&err),
        }
    }

    /// Waits for a call; on a terminal, Ctrl-C stops waiting (None) and the call is dropped,
    /// so its reply, when it comes, goes nowhere.
    async fn interruptible<T>(&mut self, call: impl std::future::Future<Output = T>) -> Option<T> {
        let outcome = match self.interrupts.as_mut() {
            Some(interrupts) => tokio::select! {
                reply = call => Some(reply),
                _ = interrupts.recv() => None,
            },
            None => Some(call.await),
        };
        if outcome.is_none() {
            eprintln!("{}", self.paint_error("cancelled: the reply, when it comes, is dropped"));
        }
        outcome
    }

    /// Reports a call that failed, once per connection when the connection ended.
    fn failed(&mut self, err: &qmpkit::Error) -> Step {
        let failure = Failure::from(err);
        let line = match &failure {
            Failure::Refused { class, desc } => format!("{class}: {desc}"),
            Failure::Usage(m) | Failure::Failed(m) => format!("qmp shell: {m}"),
        };
        if err.is_disconnected() {
            self.client = None;
            if self.ended.swap(true, Ordering::SeqCst) {
                eprintln!("{}", self.paint_error(&line));
            } else {
                eprintln!("{}", self.paint_error(&format!("{line}; `reconnect` connects again, Ctrl-D leaves")));
            }
        } else {
            eprintln!("{}", self.paint_error(&line));
        }
        Step::Failed(failure.code())
    }

    /// One HMP line: `cpu N` picks the CPU (checked with `info version`, as qmp-shell does).
    async fn hmp(&mut self, text: &str) -> Step {
        let Some(client) = self.live_client() else {
            eprintln!("{}", self.paint_error("not connected: type `reconnect`"));
            return Step::Failed(FAILED);
        };
        let (line, cpu) = match text.strip_prefix("cpu ").map(|n| n.trim().parse::<i64>()) {
            Some(Ok(n)) => ("info version".to_owned(), Some(n)),
            Some(Err(_)) => {
                eprintln!("{}", self.paint_error("cpu takes a CPU index: cpu N"));
                return Step::Failed(REFUSED);
            }
            None => (text.to_owned(), self.cpu),
        };
        let mut arguments = json!({"command-line": line});
        if let Some(cpu) = cpu {
            arguments["cpu-index"] = json!(cpu);
        }
        let Some(reply) = self.interruptible(client.execute("human-monitor-command", &arguments)).await else {
            return Step::Failed(REFUSED);
        };
        match reply {
            Ok(output) => {
                if text.starts_with("cpu ") {
                    self.cpu = cpu;
                } else {
                    let output = output.as_str().unwrap_or_default();
                    print!("{output}");
                    let _ = std::io::stdout().flush();
                }
                write_log(
                    self.log.as_ref(),
                    &json!({"execute": "human-monitor-command", "arguments": arguments, "return": output}),
                );
                Step::Done
            }
            Err(err) => self.failed(&err),
        }
    }

    async fn reconnect(&mut self) -> Step {
        let Target::Connect(addr) = self.target.clone() else {
            eprintln!("{}", self.paint_error("QEMU connected to this shell; it cannot be reconnected"));
            return Step::Failed(FAILED);
        };
        if let Some(old) = self.client.take() {
            self.ended.store(true, Ordering::SeqCst);
            old.close().await;
        }
        match common::connect_target(addr.as_deref(), builder(&self.options)).await {
            Ok(client) => {
                self.attach(client, self.interactive).await;
                Step::Done
            }
            Err(failure) => {
                failure.print("shell");
                Step::Failed(failure.code())
            }
        }
    }

    /// `help`: the commands; `help NAME`: a command's signature, members and return type,
    /// or an event's.
    fn help(&self, name: Option<&str>) -> String {
        let Some(schema) = self.schema() else {
            return "No schema loaded (HMP mode, -N, or query-qmp-schema failed).".to_owned();
        };
        let opts = qmpkit_schema::RenderOptions { depth: 3, max_enum_values: 12, max_variants: 8 };
        let Some(name) = name else {
            let mut names: Vec<&str> = schema.commands().map(|c| c.name()).collect();
            names.sort_unstable();
            return format!(
                "Shell: help [NAME], transaction( ... ), reconnect, quit, or a raw JSON object.\nCommands ({}):\n{}",
                names.len(),
                columns(&names)
            );
        };
        if let Some(command) = schema.command(name) {
            let mut out = command.signature_with(&opts);
            if let Some(args) = command.arg_type().as_object() {
                for member in args.members() {
                    let ty = qmpkit_schema::render_type(member.ty(), &opts);
                    let optional = if member.optional() { " (optional)" } else { "" };
                    out.push_str(&format!("\n  {}: {ty}{optional}", member.name()));
                }
            }
            out.push_str(&format!("\nreturns: {}", qmpkit_schema::render_type(command.ret_type(), &opts)));
            if command.allow_oob() {
                out.push_str("\nallowed out-of-band");
            }
            return out;
        }
        match schema.event(name) {
            Some(event) => format!("event {}", event.signature()),
            None => format!("no command or event named {name}"),
        }
    }
}

/// What became of a line.
enum Step {
    Done,
    Quit,
    Failed(i32),
}

/// A typed JSON object as a command: `execute` or `exec-oob`, `arguments`, `id`.
/// Checks a command against the schema as QEMU would, with QEMU's words.
fn check(schema: &Schema, name: &str, arguments: &Map<String, Value>) -> Result<(), (String, String)> {
    match schema.command(name) {
        None => Err(("CommandNotFound".to_owned(), format!("The command {name} has not been found"))),
        Some(command) => command.validate(Some(arguments)).map_err(|e| (e.class().to_owned(), e.desc().to_owned())),
    }
}

fn write_log(log: Option<&Arc<Mutex<std::fs::File>>>, value: &Value) {
    if let Some(log) = log {
        let mut file = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A full disk must not end the session; the log is best effort.
        let _ = writeln!(file, "{value}");
    }
}

/// Names in columns 80 characters wide.
fn columns(names: &[&str]) -> String {
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0) + 2;
    let per_line = (80 / width).max(1);
    names
        .chunks(per_line)
        .map(|row| row.iter().map(|n| format!("{n:width$}")).collect::<String>().trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `$XDG_DATA_HOME/qmpkit/history`, else `~/.local/share/qmpkit/history`; the directory is
/// made when missing. None when neither variable says where home is.
fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))?;
    let dir = base.join("qmpkit");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("history"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_columns() {
        use qmpkit_schema::builder::{CommandDef, MemberDef, SchemaBuilder};
        let mut b = SchemaBuilder::new();
        b.command(CommandDef::new("stop")).command(CommandDef::new("eject").arg(MemberDef::new("id", "str")));
        let schema = b.build_schema().unwrap();
        assert_eq!(
            check(&schema, "nope", &Map::new()),
            Err(("CommandNotFound".into(), "The command nope has not been found".into()))
        );
        assert_eq!(
            check(&schema, "eject", &Map::new()),
            Err(("GenericError".into(), "Parameter 'id' is missing".into()))
        );
        assert_eq!(check(&schema, "stop", &Map::new()), Ok(()));
        assert_eq!(columns(&["a", "bb", "c"]), "a   bb  c");
    }
}
