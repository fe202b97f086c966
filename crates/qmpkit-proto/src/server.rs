//! The server's state machine.
//!
//! [`ServerSession`] speaks QMP as QEMU's monitor does: it writes the greeting, gates every
//! command behind capability negotiation, checks the request envelope, echoes ids, and answers
//! malformed input, all with QEMU's exact texts. It decides what each request is and never runs
//! a command: it hands the caller [`Input::Execute`] (in-band, to run in order) or
//! [`Input::ExecuteOob`] (to run at once), or answers by itself with [`Input::Reply`].
//! `qmp_capabilities` is the one command it runs itself, because it changes the session.
//!
//! ```
//! use qmpkit_proto::server::{CommandInfo, Input, ServerConfig, ServerSession};
//! use std::collections::HashMap;
//!
//! let commands: HashMap<String, CommandInfo> =
//!     [("query-status".to_string(), CommandInfo::default())].into_iter().collect();
//! let mut session = ServerSession::new(ServerConfig::default());
//! let greeting = session.greeting();
//! assert!(greeting.starts_with(b"{\"QMP\": {\"version\": "));
//!
//! session.handle_input(b"{\"execute\": \"query-status\", \"id\": 1}");
//! let Some(Input::Reply { bytes, .. }) = session.poll_input(&commands) else { panic!() };
//! assert_eq!(bytes, b"{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n");
//!
//! session.handle_input(b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"query-status\", \"id\": 2}");
//! let Some(Input::Reply { bytes, .. }) = session.poll_input(&commands) else { panic!() };
//! assert_eq!(bytes, b"{\"return\": {}}\r\n");
//! let Some(Input::Execute(request)) = session.poll_input(&commands) else { panic!() };
//! assert_eq!(request.name, "query-status");
//! let reply = session.encode_response(request.id.as_ref(), Ok(serde_json::json!({"running": true})));
//! assert_eq!(reply, b"{\"return\": {\"running\": true}, \"id\": 2}\r\n");
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use crate::framer::{Framer, Limits, Mode};
use crate::id::Id;
use crate::message::{
    Capability, ErrorClass, Event, Greeting, QemuVersion, QmpError, Response, ServerMessage, VersionInfo,
    encode_server_value,
};
use crate::qjson::{self, Parsed};

/// Which generation of QMP the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Dialect {
    /// QMP as QEMU speaks it today.
    #[default]
    Modern,
    /// QMP as QEMU 0.12.50 spoke it in 2010: a string version in the greeting, errors with a
    /// `data` member and the seed's error classes, no `oob`, ids only on commands that passed
    /// the envelope checks.
    Seed2010,
}

/// How a [`ServerSession`] behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The version in the greeting (and in `query-version`).
    pub version: VersionInfo,
    /// Whether to offer the `oob` capability.
    pub oob: bool,
    /// Capabilities offered besides `oob`; clients cannot enable them.
    pub extra_capabilities: Vec<Capability>,
    /// The protocol generation.
    pub dialect: Dialect,
    /// Limits on what clients may send.
    pub limits: Limits,
    /// Whether to write QEMU's multi-line `pretty=on` layout.
    pub pretty: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            version: VersionInfo {
                qemu: QemuVersion::Triple { major: 10, minor: 0, micro: 2 },
                package: format!("qmpkit {}", env!("CARGO_PKG_VERSION")),
            },
            oob: true,
            extra_capabilities: Vec::new(),
            dialect: Dialect::Modern,
            limits: Limits::default(),
            pretty: false,
        }
    }
}

impl ServerConfig {
    /// The 2010 dialect as QEMU 0.12.50 spoke it: version `"0.12.50"`, no capabilities.
    #[must_use]
    pub fn seed_2010() -> Self {
        ServerConfig {
            version: VersionInfo { qemu: QemuVersion::Text("0.12.50".into()), package: String::new() },
            oob: false,
            dialect: Dialect::Seed2010,
            ..ServerConfig::default()
        }
    }
}

/// What the session needs to know about a command to judge a request for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandInfo {
    /// Whether the command may run out-of-band (`allow-oob` in the schema).
    pub allow_oob: bool,
}

/// The set of commands a server has, as the session sees it.
pub trait Commands {
    /// The command with this name, when there is one.
    fn lookup(&self, name: &str) -> Option<CommandInfo>;
}

impl Commands for HashMap<String, CommandInfo> {
    fn lookup(&self, name: &str) -> Option<CommandInfo> {
        self.get(name).copied()
    }
}

impl Commands for BTreeMap<String, CommandInfo> {
    fn lookup(&self, name: &str) -> Option<CommandInfo> {
        self.get(name).copied()
    }
}

impl<F: Fn(&str) -> Option<CommandInfo>> Commands for F {
    fn lookup(&self, name: &str) -> Option<CommandInfo> {
        self(name)
    }
}

/// A request that passed every check the session makes, for the caller to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The id to echo in the response.
    pub id: Option<Id>,
    /// The command's name.
    pub name: String,
    /// Its arguments (`{}` when the request had none).
    pub arguments: Map<String, Value>,
    /// Whether it came as `exec-oob`.
    pub oob: bool,
}

/// What the session made of the input.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// An in-band command to run after the in-band commands before it.
    Execute(Request),
    /// An out-of-band command to run at once.
    ExecuteOob(Request),
    /// A reply the session wrote by itself (to malformed input, a refused request, or
    /// `qmp_capabilities`). An in-band reply takes its place in the order of in-band replies,
    /// as QEMU queues parse errors like requests; an out-of-band one goes out at once.
    Reply {
        /// The bytes to write.
        bytes: Vec<u8>,
        /// Whether it keeps its place among in-band replies.
        in_band: bool,
    },
}

/// Why the session refused a request; rendered per dialect.
#[derive(Debug)]
enum Refusal {
    Parse(String),
    NotObject,
    MemberNotString(String),
    Clash(String, String),
    ArgumentsNotObject,
    Unexpected(String),
    LacksExecute,
    NotFound(String),
    NeedsNegotiation(String),
    AlreadyNegotiated,
    CapabilityNotAvailable(Vec<String>),
    NoOob(String),
    Argument(String),
}

impl Refusal {
    fn render(self, dialect: Dialect) -> QmpError {
        match dialect {
            Dialect::Modern => self.modern(),
            Dialect::Seed2010 => self.seed(),
        }
    }

    fn modern(self) -> QmpError {
        match self {
            Refusal::Parse(text) => QmpError::generic(text),
            Refusal::NotObject => QmpError::generic("QMP input must be a JSON object"),
            Refusal::MemberNotString(m) => QmpError::generic(format!("QMP input member '{m}' must be a string")),
            Refusal::Clash(a, b) => QmpError::generic(format!("QMP input member '{a}' clashes with '{b}'")),
            Refusal::ArgumentsNotObject => QmpError::generic("QMP input member 'arguments' must be an object"),
            Refusal::Unexpected(m) => QmpError::generic(format!("QMP input member '{m}' is unexpected")),
            Refusal::LacksExecute => QmpError::generic("QMP input lacks member 'execute'"),
            Refusal::NotFound(name) => QmpError::command_not_found(format!("The command {name} has not been found")),
            Refusal::NeedsNegotiation(_) => {
                QmpError::command_not_found("Expecting capabilities negotiation with 'qmp_capabilities'")
            }
            Refusal::AlreadyNegotiated => {
                QmpError::command_not_found("Capabilities negotiation is already complete, command ignored")
            }
            Refusal::CapabilityNotAvailable(caps) => {
                QmpError::generic(format!("Capability {} not available", caps.join(", ")))
            }
            Refusal::NoOob(name) => QmpError::generic(format!("The command {name} does not support OOB")),
            Refusal::Argument(text) => QmpError::generic(text),
        }
    }

    /// The 2010 rendering: the seed's classes, with `data` always present.
    fn seed(self) -> QmpError {
        let seed = |class: &str, desc: String, data: Value| QmpError {
            class: ErrorClass::from_name(class),
            desc,
            data: Some(data),
        };
        match self {
            Refusal::Parse(_) => seed("JSONParsing", "Invalid JSON syntax".into(), json!({})),
            Refusal::NotObject => {
                seed("QMPBadInputObject", "Expected 'object' in QMP input".into(), json!({"expected": "object"}))
            }
            Refusal::LacksExecute => {
                seed("QMPBadInputObject", "Expected 'execute' in QMP input".into(), json!({"expected": "execute"}))
            }
            Refusal::MemberNotString(m) => seed(
                "QMPBadInputObjectMember",
                format!("QMP input object member '{m}' expects 'string'"),
                json!({"member": m, "expected": "string"}),
            ),
            Refusal::ArgumentsNotObject => seed(
                "QMPBadInputObjectMember",
                "QMP input object member 'arguments' expects 'object'".into(),
                json!({"member": "arguments", "expected": "object"}),
            ),
            Refusal::Unexpected(m) | Refusal::Clash(m, _) => seed(
                "QMPExtraInputObjectMember",
                format!("QMP input object member '{m}' is unexpected"),
                json!({"member": m}),
            ),
            Refusal::NotFound(name) | Refusal::NeedsNegotiation(name) | Refusal::NoOob(name) => {
                seed("CommandNotFound", format!("The command {name} has not been found"), json!({"name": name}))
            }
            Refusal::AlreadyNegotiated => seed(
                "CommandNotFound",
                "The command qmp_capabilities has not been found".into(),
                json!({"name": "qmp_capabilities"}),
            ),
            Refusal::CapabilityNotAvailable(_) | Refusal::Argument(_) => {
                seed("InvalidParameter", "Invalid parameter 'enable'".into(), json!({"name": "enable"}))
            }
        }
    }
}

/// The server side of one QMP connection, without IO.
///
/// The [module documentation](crate::server) follows one session from the greeting through
/// negotiation to a command's reply, as a runnable example.
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    framer: Framer,
    negotiated: bool,
    oob: bool,
}

impl ServerSession {
    /// A session for a connection that just opened.
    #[must_use]
    pub fn new(config: ServerConfig) -> Self {
        let framer = Framer::new(Mode::Server, config.limits);
        ServerSession { config, framer, negotiated: false, oob: false }
    }

    /// The session's configuration.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The greeting message.
    #[must_use]
    pub fn greeting_message(&self) -> Greeting {
        let mut capabilities = Vec::new();
        if self.config.oob && self.config.dialect == Dialect::Modern {
            capabilities.push(Capability::Oob);
        }
        capabilities.extend(self.config.extra_capabilities.iter().cloned());
        Greeting { version: Some(self.config.version.clone()), capabilities }
    }

    /// The greeting's bytes, to write as soon as the connection opens.
    #[must_use]
    pub fn greeting(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ServerMessage::Greeting(self.greeting_message()).encode_server(self.config.pretty, &mut out);
        out
    }

    /// Whether `qmp_capabilities` succeeded; until then events are not delivered.
    #[must_use]
    pub fn is_negotiated(&self) -> bool {
        self.negotiated
    }

    /// Whether the client enabled `oob`.
    #[must_use]
    pub fn oob_enabled(&self) -> bool {
        self.oob
    }

    /// Whether a request has started arriving and is not complete.
    #[must_use]
    pub fn is_mid_message(&self) -> bool {
        self.framer.is_mid_message()
    }

    /// Takes bytes read from the client.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
    }

    /// Processes buffered input until a request or a reply is ready, and returns it.
    pub fn poll_input(&mut self, commands: &impl Commands) -> Option<Input> {
        loop {
            let frame = match self.framer.next_frame()? {
                Ok(frame) => frame,
                Err(err) => return Some(self.reply_in_band(None, Refusal::Parse(err.to_string()))),
            };
            let parsed = match qjson::parse_request(frame.as_bytes()) {
                Ok(parsed) => parsed,
                Err(text) => return Some(self.reply_in_band(None, Refusal::Parse(text))),
            };
            if let Some(input) = self.judge(parsed, commands) {
                return Some(input);
            }
        }
    }

    /// Encodes the response to a request, echoing its id.
    #[must_use]
    pub fn encode_response(&self, id: Option<&Id>, result: Result<Value, QmpError>) -> Vec<u8> {
        let result = result.map_err(|mut error| {
            if self.config.dialect == Dialect::Seed2010 && error.data.is_none() {
                error.data = Some(json!({}));
            }
            error
        });
        let mut out = Vec::new();
        ServerMessage::Response(Response { id: id.cloned(), result }).encode_server(self.config.pretty, &mut out);
        out
    }

    /// Encodes an event for this connection, or `None` while it is still negotiating, when
    /// QEMU drops events rather than queue them.
    #[must_use]
    pub fn encode_event(&self, event: &Event) -> Option<Vec<u8>> {
        if !self.negotiated {
            return None;
        }
        let mut out = Vec::new();
        ServerMessage::Event(event.clone()).encode_server(self.config.pretty, &mut out);
        Some(out)
    }

    /// Encodes any value as this server writes messages, for callers that build their own.
    #[must_use]
    pub fn encode_value(&self, value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_server_value(value, self.config.pretty, &mut out);
        out
    }

    fn reply_in_band(&self, id: Option<Id>, refusal: Refusal) -> Input {
        let bytes = self.encode_response(id.as_ref(), Err(refusal.render(self.config.dialect)));
        Input::Reply { bytes, in_band: true }
    }

    fn judge(&mut self, parsed: Parsed, commands: &impl Commands) -> Option<Input> {
        // The envelope's members in the order they came; a map only for an unusually large
        // envelope, which the checks below refuse anyway.
        let envelope: Vec<(Cow<'_, str>, Value)> = match parsed {
            Parsed::Members(members) => members,
            Parsed::Value(Value::Object(map)) => map.into_iter().map(|(key, value)| (Cow::Owned(key), value)).collect(),
            Parsed::Value(_) => return Some(self.reply_in_band(None, Refusal::NotObject)),
        };
        let seed = self.config.dialect == Dialect::Seed2010;
        // An envelope has a handful of members: one walk over them finds what the checks
        // below need, where lookups by name would hash each name.
        let (mut id, mut has_execute, mut has_exec_oob) = (None, false, false);
        for (key, value) in &envelope {
            match key.as_ref() {
                "id" => id = Some(value),
                "execute" => has_execute = true,
                "exec-oob" => has_exec_oob = true,
                _ => {}
            }
        }
        // QEMU reads the id before it checks anything else and echoes it on every reply to an
        // object; the seed took it only after the envelope checks.
        let id = id.cloned().map(Id::new);
        let checked_id = |ok: bool| if seed && !ok { None } else { id.clone() };
        // A request "looks out-of-band" when it has `exec-oob` and no `execute`; QEMU
        // dispatches those at once, ahead of the queue, even to refuse them.
        let looks_oob = !seed && has_exec_oob && !has_execute;
        let refuse = |session: &Self, id: Option<Id>, refusal: Refusal| {
            let bytes = session.encode_response(id.as_ref(), Err(refusal.render(session.config.dialect)));
            Some(Input::Reply { bytes, in_band: !looks_oob })
        };
        if let Err(refusal) = self.check_envelope(&envelope) {
            return refuse(self, checked_id(false), refusal);
        }
        // The checks passed: exactly one of `execute` and `exec-oob` is there, and it is a
        // string; `arguments`, when there, is an object.
        let (mut execute, mut exec_oob, mut arguments) = (None, None, Map::new());
        for (key, value) in envelope {
            match (key.as_ref(), value) {
                ("execute", Value::String(name)) => execute = Some(name),
                ("exec-oob", Value::String(name)) => exec_oob = Some(name),
                ("arguments", Value::Object(object)) => arguments = object,
                _ => {}
            }
        }
        let (name, oob) = match (execute, exec_oob) {
            (Some(name), _) => (name, false),
            (None, Some(name)) => (name, true),
            (None, None) => return refuse(self, checked_id(false), Refusal::LacksExecute),
        };
        if name == "qmp_capabilities" {
            // Once negotiated, `qmp_capabilities` is an ordinary command without `allow-oob`,
            // so `exec-oob` meets QEMU's OOB check before the command runs.
            if oob {
                return refuse(self, id, Refusal::NoOob(name));
            }
            return Some(self.negotiate(id, &arguments, looks_oob));
        }
        if !self.negotiated {
            return refuse(self, id, Refusal::NeedsNegotiation(name));
        }
        let Some(info) = commands.lookup(&name) else {
            return refuse(self, id, Refusal::NotFound(name));
        };
        if oob && !info.allow_oob {
            return refuse(self, id, Refusal::NoOob(name));
        }
        let request = Request { id, name, arguments, oob };
        Some(if oob { Input::ExecuteOob(request) } else { Input::Execute(request) })
    }

    /// QEMU's envelope checks, in the order QEMU visits the members (see [`qdict_order`]).
    fn check_envelope(&self, envelope: &[(Cow<'_, str>, Value)]) -> Result<(), Refusal> {
        if self.envelope_is_sound(envelope) {
            return Ok(());
        }
        let mut exec_key: Option<&str> = None;
        for (key, value) in qdict_order(envelope.iter().map(|(key, value)| (key.as_ref(), value))) {
            match key {
                "execute" | "exec-oob" if key == "execute" || self.oob => {
                    if !value.is_string() {
                        return Err(Refusal::MemberNotString(key.to_owned()));
                    }
                    if let Some(first) = exec_key {
                        return Err(Refusal::Clash(key.to_owned(), first.to_owned()));
                    }
                    exec_key = Some(key);
                }
                "arguments" => {
                    if !value.is_object() {
                        return Err(Refusal::ArgumentsNotObject);
                    }
                }
                "id" => {}
                other => return Err(Refusal::Unexpected(other.to_owned())),
            }
        }
        if exec_key.is_none() {
            return Err(Refusal::LacksExecute);
        }
        Ok(())
    }

    /// Whether no member of the envelope fails any check, so that the order QEMU visits them
    /// in cannot matter: the common case, answered without sorting the members.
    fn envelope_is_sound(&self, envelope: &[(Cow<'_, str>, Value)]) -> bool {
        let mut exec_keys = 0;
        for (key, value) in envelope {
            match key.as_ref() {
                "execute" => exec_keys += 1,
                "exec-oob" if self.oob => exec_keys += 1,
                "arguments" if value.is_object() => continue,
                "id" => continue,
                _ => return false,
            }
            if !value.is_string() {
                return false;
            }
        }
        exec_keys == 1
    }

    /// Runs `qmp_capabilities` as QEMU does: its generated code checks the arguments first,
    /// then the command refuses a second negotiation, then capabilities not on offer.
    fn negotiate(&mut self, id: Option<Id>, arguments: &Map<String, Value>, looks_oob: bool) -> Input {
        let result = self.parse_enable(arguments).and_then(|wanted| {
            if self.negotiated { Err(Refusal::AlreadyNegotiated) } else { self.accept_capabilities(&wanted) }
        });
        let bytes = match result {
            Ok(oob) => {
                self.negotiated = true;
                self.oob = oob;
                self.encode_response(id.as_ref(), Ok(json!({})))
            }
            Err(refusal) => self.encode_response(id.as_ref(), Err(refusal.render(self.config.dialect))),
        };
        Input::Reply { bytes, in_band: !looks_oob }
    }

    /// Checks `qmp_capabilities`' arguments as QEMU's generated visitor does: `enable` is
    /// visited first, then any other member is unexpected. Returns the capabilities asked for.
    fn parse_enable(&self, arguments: &Map<String, Value>) -> Result<Vec<String>, Refusal> {
        let seed = self.config.dialect == Dialect::Seed2010;
        let mut wanted = Vec::new();
        if let Some(value) = arguments.get("enable").filter(|_| !seed) {
            let Value::Array(items) = value else {
                return Err(Refusal::Argument("Invalid parameter type for 'enable', expected: array".into()));
            };
            for item in items {
                // QEMU names the elements of this list 'null' in its messages.
                let Value::String(cap) = item else {
                    return Err(Refusal::Argument("Invalid parameter type for 'null', expected: string".into()));
                };
                if cap != "oob" {
                    return Err(Refusal::Argument(format!("Parameter 'null' does not accept value '{cap}'")));
                }
                wanted.push(cap.clone());
            }
        }
        if let Some((key, _)) = qdict_order(arguments.iter().map(|(key, value)| (key.as_str(), value)))
            .into_iter()
            .find(|(key, _)| seed || *key != "enable")
        {
            return Err(Refusal::Argument(format!("Parameter '{key}' is unexpected")));
        }
        Ok(wanted)
    }

    /// Enables the capabilities asked for, refusing those not on offer (`qmp_caps_accept`),
    /// and says whether `oob` is enabled.
    fn accept_capabilities(&self, wanted: &[String]) -> Result<bool, Refusal> {
        let unavailable: Vec<String> = wanted.iter().filter(|_| !self.config.oob).cloned().collect();
        if !unavailable.is_empty() {
            return Err(Refusal::CapabilityNotAvailable(unavailable));
        }
        Ok(!wanted.is_empty())
    }
}

/// The members of a JSON object in the order QEMU iterates over them.
///
/// QEMU keeps a request in a `QDict`, a hash table of 512 buckets with `tdb_hash`; iteration
/// goes bucket by bucket and, within a bucket, from the member inserted last. So the first
/// envelope error QEMU reports does not depend on the order the members arrived in, except
/// between members that share a bucket: `{"foo": 1, "execute": 2}` is refused for `execute`
/// either way round, while of `execute` and `xl` (one bucket) the later one is checked first.
fn qdict_order<'a>(object: impl Iterator<Item = (&'a str, &'a Value)>) -> Vec<(&'a str, &'a Value)> {
    const BUCKETS: u32 = 512;
    let mut members: Vec<(u32, usize, (&str, &Value))> =
        object.enumerate().map(|(i, member)| (tdb_hash(member.0.as_bytes()) % BUCKETS, i, member)).collect();
    members.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    members.into_iter().map(|(_, _, member)| member).collect()
}

/// QEMU's `tdb_hash` (`qobject/qdict.c`), which places a key in its bucket.
fn tdb_hash(key: &[u8]) -> u32 {
    #[allow(clippy::cast_possible_truncation)] // C's `unsigned` arithmetic wraps the same way.
    let mut value = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, &byte) in key.iter().enumerate() {
        value = value.wrapping_add(u32::from(byte) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345)
}

#[cfg(test)]
mod tests;
