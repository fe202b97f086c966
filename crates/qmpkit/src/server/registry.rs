//! The command registry: typed handlers, the schema they are validated against, and the
//! built-in commands.
//!
//! Every command is registered with a [`CommandDef`], its QAPI description (arguments,
//! return type, `allow-oob`). The registry builds one [`Schema`] from all the descriptions
//! with `qmpkit-schema`'s builder; that schema answers `query-qmp-schema` in QEMU's masked
//! format and validates each request's `arguments`, with QEMU's texts, before the handler
//! runs. A handler therefore never sees an unknown member, a wrong type or a missing member,
//! and a refused request has no side effect. The valid arguments are then deserialised with
//! serde into the handler's argument type.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use qmpkit_proto::server::{CommandInfo, Commands, Dialect};
use qmpkit_proto::{ErrorClass, QmpError, VersionInfo};
use qmpkit_schema::{
    ArgumentError, ArgumentErrorKind, BuildError, Builtin, CommandDef, EnumDef, EventDef, MemberDef, ObjectDef, Schema,
    TypeDef, TypeRef,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::events::ConnShared;
use super::events::{EventSender, Throttle};
use super::fds::FdSets;

/// What a handler gives back: the `return` value, or the error to send.
pub type CommandResult = Result<Value, QmpError>;

/// A boxed, sendable future, as the registry stores handlers.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

type RawHandler = Arc<dyn Fn(Context, Map<String, Value>) -> BoxFuture<CommandResult> + Send + Sync>;

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A command, event or type of that name is already registered.
    #[error("'{0}' is already registered")]
    Duplicate(String),
    /// The descriptions do not form a valid schema (an undefined type, a bad union, ...).
    #[error("invalid schema: {0}")]
    Schema(#[from] BuildError),
}

/// What a running command may use besides its arguments: the connection's file
/// descriptors, the server's fd sets and events, and facts about the request.
///
/// It is cheap to clone, so a handler can move it into the future it returns.
#[derive(Clone)]
pub struct Context {
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Arc<ConnShared>,
    pub(crate) connection: u64,
    pub(crate) oob: bool,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("connection", &self.connection).field("oob", &self.oob).finish()
    }
}

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) version: VersionInfo,
    pub(crate) dialect: Dialect,
    pub(crate) fdsets: FdSets,
    pub(crate) events: EventSender,
    /// The server's own state for its handlers ([`Context::data`]).
    pub(crate) data: Option<Arc<dyn Any + Send + Sync>>,
    /// Set when the server exits as QEMU does: queued requests are dropped unanswered.
    pub(crate) exiting: AtomicBool,
    /// Turns `true` when the server is asked to shut down.
    pub(crate) stop: watch::Sender<bool>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("version", &self.version)
            .field("dialect", &self.dialect)
            .field("data", &self.data.is_some())
            .field("exiting", &self.exiting)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(version: VersionInfo, dialect: Dialect, fdsets: FdSets, events: EventSender) -> Self {
        Shared {
            version,
            dialect,
            fdsets,
            events,
            data: None,
            exiting: AtomicBool::new(false),
            stop: watch::channel(false).0,
        }
    }

    /// Asks every connection to finish; with `exit`, their queued requests are dropped
    /// unanswered instead of failed.
    pub(crate) fn shutdown(&self, exit: bool) {
        if exit {
            self.exiting.store(true, Ordering::SeqCst);
        }
        self.stop.send_replace(true);
        self.events.hub().shutdown_all();
    }
}

impl Context {
    /// A context outside any connection, for [`Registry::call`]: no fds, a default version,
    /// and an event sender nobody listens to.
    #[must_use]
    pub fn detached() -> Self {
        let shared = Shared::new(
            qmpkit_proto::ServerConfig::default().version,
            Dialect::Modern,
            FdSets::default(),
            EventSender::new(usize::MAX, false, Throttle::none()),
        );
        Context { shared: Arc::new(shared), conn: Arc::default(), connection: 0, oob: false }
    }

    /// A number that identifies the connection within its server (0 when detached).
    #[must_use]
    pub fn connection_id(&self) -> u64 {
        self.connection
    }

    /// Whether the command came as `exec-oob`.
    #[must_use]
    pub fn is_oob(&self) -> bool {
        self.oob
    }

    /// Takes the file descriptor the client passed with `SCM_RIGHTS`, if one is waiting.
    ///
    /// As in QEMU, a connection has one slot: an fd that came with any message waits there
    /// until a command takes it, a later fd replaces it, and only the first of several fds
    /// sent together is kept. Normally the fd is the one that came with this command.
    #[must_use]
    pub fn take_fd(&self) -> Option<OwnedFd> {
        self.conn.fds.take()
    }

    /// Removes and returns the fd this connection named with `getfd`, for commands that
    /// take an `fdname` argument and consume the fd.
    #[must_use]
    pub fn take_named_fd(&self, name: &str) -> Option<OwnedFd> {
        self.conn.fds.take_named(name)
    }

    /// A duplicate of the fd this connection named with `getfd`, leaving the name in place.
    ///
    /// # Errors
    /// `None` when there is no such name; `Some(Err)` when duplicating fails.
    #[must_use]
    pub fn dup_named_fd(&self, name: &str) -> Option<std::io::Result<OwnedFd>> {
        self.conn.fds.dup_named(name)
    }

    /// The fd sets, shared by every connection of the server.
    #[must_use]
    pub fn fdsets(&self) -> &FdSets {
        &self.shared.fdsets
    }

    /// The server's event sender.
    #[must_use]
    pub fn events(&self) -> &EventSender {
        &self.shared.events
    }

    /// The version the server announces.
    #[must_use]
    pub fn version(&self) -> &VersionInfo {
        &self.shared.version
    }

    /// The server's own state, as given to [`ServerBuilder::data`](super::ServerBuilder::data),
    /// when it is a `T`. This is how one registry (built once, shared through
    /// [`ServerBuilder::shared_registry`](super::ServerBuilder::shared_registry)) serves many
    /// servers that each have their own state, such as one simulated machine per server.
    #[must_use]
    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.shared.data.as_deref()?.downcast_ref::<T>()
    }

    /// Stops the server as QEMU stops on `quit`: the running command's reply is still sent,
    /// but requests queued behind it on every connection are dropped unanswered, nothing
    /// more is read, every connection is flushed and closed, and [`Server::serve`](super::Server::serve)
    /// returns. Calling it in a handler before returning guarantees that no later request of
    /// the same connection runs. See [`Server::exit`](super::Server::exit).
    pub fn exit_server(&self) {
        self.shared.shutdown(true);
    }
}

/// How a command runs.
#[derive(Clone)]
enum Run {
    Handler(RawHandler),
    Builtin(BuiltinCommand),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BuiltinCommand {
    Capabilities,
    QueryCommands,
    QuerySchema,
    QueryVersion,
    Getfd,
    Closefd,
    AddFd,
    RemoveFd,
    QueryFdsets,
}

#[derive(Clone)]
struct Entry {
    def: CommandDef,
    run: Run,
    /// Whether the schema validates the arguments before the handler runs.
    checked: bool,
}

/// The schema built from the registrations, and the replies derived from it.
#[derive(Debug)]
struct Compiled {
    schema: Schema,
    introspection: Arc<Value>,
    names: Value,
}

/// The commands, events and types a server has.
///
/// A new registry holds QEMU's built-ins: `qmp_capabilities` (run by the session itself,
/// but listed), `query-commands`, `query-qmp-schema` and `query-version`.
/// [`Registry::fd_commands`] adds `getfd`, `closefd`, `add-fd`, `remove-fd` and
/// `query-fdsets`. The type names `qmpkit.*` are reserved for the built-ins.
///
/// The registry runs commands without any transport ([`Registry::call`]), which is what
/// tests and examples use:
///
/// ```
/// use qmpkit::server::{CommandDef, MemberDef, QmpError, Registry};
/// use serde::Deserialize;
/// use serde_json::json;
///
/// #[derive(Deserialize)]
/// struct Args { a: i64, b: i64 }
///
/// let mut registry = Registry::new();
/// registry.command(
///     CommandDef::new("x-add").arg(MemberDef::new("a", "int")).arg(MemberDef::new("b", "int")).returns("int"),
///     |args: Args| async move { Ok::<_, QmpError>(args.a + args.b) },
/// )?;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(registry.call("x-add", json!({"a": 1, "b": 2})).await, Ok(json!(3)));
/// let err = registry.call("x-add", json!({"a": 1})).await.unwrap_err();
/// assert_eq!(err.desc, "Parameter 'b' is missing");
/// # });
/// # Ok::<(), qmpkit::server::RegistryError>(())
/// ```
#[derive(Clone)]
pub struct Registry {
    commands: Vec<Entry>,
    index: HashMap<String, usize>,
    events: Vec<EventDef>,
    types: Vec<TypeDef>,
    /// Entities that answer `query-qmp-schema` verbatim, instead of the built ones.
    introspection: Option<Arc<Value>>,
    compiled: Arc<OnceLock<Result<Arc<Compiled>, BuildError>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.commands.iter().map(|e| e.def.name.as_str()).collect();
        f.debug_struct("Registry").field("commands", &names).finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// A registry with QEMU's built-in commands.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry {
            commands: Vec::new(),
            index: HashMap::new(),
            events: Vec::new(),
            types: Vec::new(),
            introspection: None,
            compiled: Arc::default(),
        };
        for def in builtin_types() {
            registry.types.push(def);
        }
        let builtins = [
            (
                CommandDef::new("qmp_capabilities")
                    .arg(MemberDef::optional("enable", TypeRef::array("qmpkit.QMPCapability"))),
                BuiltinCommand::Capabilities,
            ),
            (
                CommandDef::new("query-commands").returns(TypeRef::array("qmpkit.CommandInfo")),
                BuiltinCommand::QueryCommands,
            ),
            (
                CommandDef::new("query-qmp-schema").returns(TypeRef::array("qmpkit.SchemaInfo")),
                BuiltinCommand::QuerySchema,
            ),
            (CommandDef::new("query-version").returns("qmpkit.VersionInfo"), BuiltinCommand::QueryVersion),
        ];
        for (def, builtin) in builtins {
            registry.insert(def, Run::Builtin(builtin)).expect("the built-in names are distinct; qed");
        }
        registry
    }

    /// Adds QEMU's fd commands: `getfd` and `closefd` (names per connection) and `add-fd`,
    /// `remove-fd` and `query-fdsets` (fd sets shared by all connections), with QEMU's
    /// arguments, results and error texts.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] when one of these names is already registered.
    pub fn fd_commands(&mut self) -> Result<&mut Self, RegistryError> {
        let commands = [
            (CommandDef::new("getfd").arg(MemberDef::new("fdname", "str")), BuiltinCommand::Getfd),
            (CommandDef::new("closefd").arg(MemberDef::new("fdname", "str")), BuiltinCommand::Closefd),
            (
                CommandDef::new("add-fd")
                    .arg(MemberDef::optional("fdset-id", "int"))
                    .arg(MemberDef::optional("opaque", "str"))
                    .returns("qmpkit.AddfdInfo"),
                BuiltinCommand::AddFd,
            ),
            (
                CommandDef::new("remove-fd")
                    .arg(MemberDef::new("fdset-id", "int"))
                    .arg(MemberDef::optional("fd", "int")),
                BuiltinCommand::RemoveFd,
            ),
            (CommandDef::new("query-fdsets").returns(TypeRef::array("qmpkit.FdsetInfo")), BuiltinCommand::QueryFdsets),
        ];
        for (def, builtin) in commands {
            self.insert(def, Run::Builtin(builtin))?;
        }
        Ok(self)
    }

    /// Registers a command whose handler takes its arguments as `A`, deserialised with serde
    /// after they passed validation against `def`, and returns `R` (`()` sends `{}`).
    ///
    /// `def` must describe what `A` accepts: validation uses `def`, so a member `A` has but
    /// `def` lacks is refused as unexpected, and one `def` has but `A` lacks is ignored.
    /// Mark the command OOB-capable with [`CommandDef::allow_oob`].
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] when a command of that name exists.
    pub fn command<A, R, F, Fut>(&mut self, def: CommandDef, handler: F) -> Result<&mut Self, RegistryError>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, QmpError>> + Send + 'static,
    {
        self.command_with_context(def, move |_ctx: Context, args: A| handler(args))
    }

    /// As [`Registry::command`], for a handler that also needs the [`Context`]: the fd
    /// passed with the command, named fds, fd sets or the event sender.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] when a command of that name exists.
    pub fn command_with_context<A, R, F, Fut>(
        &mut self,
        def: CommandDef,
        handler: F,
    ) -> Result<&mut Self, RegistryError>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, QmpError>> + Send + 'static,
    {
        let name = def.name.clone();
        let raw: RawHandler = Arc::new(move |ctx, arguments| {
            let args = match deserialize_arguments::<A>(arguments) {
                Ok(args) => args,
                Err(err) => {
                    tracing::warn!(command = name, %err, "arguments passed the schema but not serde");
                    let err = QmpError::generic(format!("Invalid arguments for '{name}': {err}"));
                    return Box::pin(std::future::ready(Err(err)));
                }
            };
            let future = handler(ctx, args);
            Box::pin(async move { future.await.and_then(|r| serialize_return(&r)) })
        });
        self.insert(def, Run::Handler(raw))
    }

    /// Registers a command with a handler that works on JSON directly: it gets the
    /// validated `arguments` object and returns the `return` value.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] when a command of that name exists.
    pub fn command_raw<F, Fut>(&mut self, def: CommandDef, handler: F) -> Result<&mut Self, RegistryError>
    where
        F: Fn(Context, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CommandResult> + Send + 'static,
    {
        let raw: RawHandler = Arc::new(move |ctx, arguments| Box::pin(handler(ctx, arguments)));
        self.insert(def, Run::Handler(raw))
    }

    /// As [`Registry::command_raw`], for a command whose arguments the schema does not
    /// check: the handler gets `arguments` as the client sent them (an object) and checks
    /// them itself. `def` still describes the command in `query-qmp-schema` and says
    /// whether it allows `exec-oob`.
    ///
    /// This is QEMU's `'gen': false` commands, such as `device_add`, whose arguments are
    /// open-ended (each device model has its own properties) and are checked by the code
    /// that runs them, with its own error texts.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] when a command of that name exists.
    pub fn command_unchecked<F, Fut>(&mut self, def: CommandDef, handler: F) -> Result<&mut Self, RegistryError>
    where
        F: Fn(Context, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CommandResult> + Send + 'static,
    {
        let raw: RawHandler = Arc::new(move |ctx, arguments| Box::pin(handler(ctx, arguments)));
        self.insert_entry(Entry { def, run: Run::Handler(raw), checked: false })
    }

    /// Answers `query-qmp-schema` with `entities` exactly as given, instead of the entities
    /// built from the registered descriptions. A server that imitates another (a simulated
    /// QEMU) uses it to return that program's own entries, masked names and all; the
    /// descriptions still validate arguments, so they should describe the same structure.
    pub fn introspection(&mut self, entities: Vec<Value>) -> &mut Self {
        self.introspection = Some(Arc::new(Value::Array(entities)));
        self.invalidate();
        self
    }

    /// Describes an event, so that `query-qmp-schema` lists it. Events are sent with
    /// [`EventSender`]; describing them is optional.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] when an event of that name exists.
    pub fn event(&mut self, def: EventDef) -> Result<&mut Self, RegistryError> {
        if self.events.iter().any(|e| e.name == def.name) {
            return Err(RegistryError::Duplicate(def.name));
        }
        self.events.push(def);
        self.invalidate();
        Ok(self)
    }

    /// Defines a named type (enum, object, union or alternate) that commands and events
    /// refer to by name.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] when a type of that name exists.
    pub fn type_(&mut self, def: impl Into<TypeDef>) -> Result<&mut Self, RegistryError> {
        let def = def.into();
        if self.types.iter().any(|t| t.name() == def.name()) {
            return Err(RegistryError::Duplicate(def.name().to_owned()));
        }
        self.types.push(def);
        self.invalidate();
        Ok(self)
    }

    /// Checks that the descriptions form a valid schema; the server does this when it is
    /// built, so that a mistake shows at start-up rather than at the first request.
    ///
    /// # Errors
    /// [`RegistryError::Schema`] naming the problem.
    pub fn check(&self) -> Result<(), RegistryError> {
        self.compiled().map(|_| ()).map_err(RegistryError::Schema)
    }

    /// The `query-qmp-schema` reply value.
    ///
    /// # Errors
    /// [`RegistryError::Schema`] when the descriptions do not form a valid schema.
    pub fn introspect(&self) -> Result<Value, RegistryError> {
        Ok(Value::clone(&self.compiled()?.introspection))
    }

    /// The names of the commands, in registration order (built-ins first).
    pub fn command_names(&self) -> impl Iterator<Item = &str> {
        self.commands.iter().map(|e| e.def.name.as_str())
    }

    /// Runs a command as a negotiated connection would, without any transport: looks it up,
    /// validates `arguments` (an object, or `null` for none) and runs the handler with a
    /// [`Context::detached`].
    ///
    /// # Errors
    /// The [`QmpError`] a client would get, with QEMU's class and text.
    pub async fn call(&self, name: &str, arguments: Value) -> CommandResult {
        let arguments = match arguments {
            Value::Null => Map::new(),
            Value::Object(map) => map,
            _ => return Err(QmpError::generic("QMP input member 'arguments' must be an object")),
        };
        if name == "qmp_capabilities" {
            return Err(QmpError::command_not_found("Capabilities negotiation is already complete, command ignored"));
        }
        if !self.index.contains_key(name) {
            return Err(QmpError::command_not_found(format!("The command {name} has not been found")));
        }
        self.dispatch(Context::detached(), name, arguments).await
    }

    /// Validates and starts a command the session accepted. The returned future does the
    /// work; validation errors come back as a ready future, so nothing ran.
    pub(crate) fn dispatch(&self, ctx: Context, name: &str, arguments: Map<String, Value>) -> BoxFuture<CommandResult> {
        let dialect = ctx.shared.dialect;
        let Some(&i) = self.index.get(name) else {
            let err = QmpError::command_not_found(format!("The command {name} has not been found"));
            return Box::pin(std::future::ready(Err(err)));
        };
        let compiled = match self.compiled() {
            Ok(compiled) => compiled,
            Err(err) => {
                return Box::pin(std::future::ready(Err(QmpError::generic(format!("invalid schema: {err}")))));
            }
        };
        let entry = &self.commands[i];
        if let Some(command) = compiled.schema.command(name).filter(|_| entry.checked) {
            if let Err(err) = command.validate(Some(&arguments)) {
                return Box::pin(std::future::ready(Err(argument_error(&err, dialect))));
            }
        }
        match &entry.run {
            Run::Handler(handler) => handler(ctx, arguments),
            Run::Builtin(builtin) => {
                let result = self.builtin(*builtin, &ctx, &compiled, &arguments);
                Box::pin(std::future::ready(result))
            }
        }
    }

    fn builtin(
        &self,
        builtin: BuiltinCommand,
        ctx: &Context,
        compiled: &Compiled,
        arguments: &Map<String, Value>,
    ) -> CommandResult {
        let str_arg = |name: &str| arguments.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let int_arg = |name: &str| arguments.get(name).and_then(Value::as_i64);
        match builtin {
            BuiltinCommand::Capabilities => {
                Err(QmpError::command_not_found("Capabilities negotiation is already complete, command ignored"))
            }
            BuiltinCommand::QueryCommands => Ok(compiled.names.clone()),
            BuiltinCommand::QuerySchema => Ok(Value::clone(&compiled.introspection)),
            BuiltinCommand::QueryVersion => Ok(ctx.shared.version.to_value()),
            BuiltinCommand::Getfd => {
                let name = str_arg("fdname");
                let Some(fd) = ctx.take_fd() else {
                    return Err(fd_error(
                        ctx,
                        "FdNotSupplied",
                        "No file descriptor supplied via SCM_RIGHTS",
                        json!({}),
                    ));
                };
                if name.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(QmpError::generic("Parameter 'fdname' expects a name not starting with a digit"));
                }
                let in_sets = ctx.shared.fdsets.owned_by(ctx.connection);
                ctx.conn.fds.insert_named(name, fd, in_sets).map_err(QmpError::generic)?;
                Ok(json!({}))
            }
            BuiltinCommand::Closefd => {
                let name = str_arg("fdname");
                match ctx.conn.fds.take_named(&name) {
                    Some(_) => Ok(json!({})),
                    None => Err(fd_error(
                        ctx,
                        "FdNotFound",
                        &format!("File descriptor named '{name}' not found"),
                        json!({"name": name}),
                    )),
                }
            }
            BuiltinCommand::AddFd => {
                let Some(fd) = ctx.take_fd() else {
                    return Err(QmpError::generic("No file descriptor supplied via SCM_RIGHTS"));
                };
                let opaque = arguments.get("opaque").and_then(Value::as_str).map(str::to_owned);
                let (set, fd) = ctx
                    .shared
                    .fdsets
                    .add_owned(int_arg("fdset-id"), fd, opaque, ctx.connection, Some(&ctx.conn.fds))
                    .map_err(QmpError::generic)?;
                Ok(json!({"fd": fd, "fdset-id": set}))
            }
            BuiltinCommand::RemoveFd => {
                let set = int_arg("fdset-id").unwrap_or_default();
                ctx.shared.fdsets.remove(set, int_arg("fd")).map_err(QmpError::generic)?;
                Ok(json!({}))
            }
            BuiltinCommand::QueryFdsets => Ok(ctx.shared.fdsets.query()),
        }
    }

    fn insert(&mut self, def: CommandDef, run: Run) -> Result<&mut Self, RegistryError> {
        self.insert_entry(Entry { def, run, checked: true })
    }

    fn insert_entry(&mut self, entry: Entry) -> Result<&mut Self, RegistryError> {
        if self.index.contains_key(&entry.def.name) {
            return Err(RegistryError::Duplicate(entry.def.name));
        }
        self.index.insert(entry.def.name.clone(), self.commands.len());
        self.commands.push(entry);
        self.invalidate();
        Ok(self)
    }

    fn invalidate(&mut self) {
        self.compiled = Arc::default();
    }

    fn compiled(&self) -> Result<Arc<Compiled>, BuildError> {
        self.compiled.get_or_init(|| self.compile().map(Arc::new)).clone()
    }

    fn compile(&self) -> Result<Compiled, BuildError> {
        let mut builder = qmpkit_schema::SchemaBuilder::new();
        for def in &self.types {
            builder.type_(def.clone());
        }
        for entry in &self.commands {
            builder.command(entry.def.clone());
        }
        for def in &self.events {
            builder.event(def.clone());
        }
        // Generating the entities costs as much as the schema itself; skip it when they are
        // given.
        let introspection = match &self.introspection {
            Some(given) => given.clone(),
            None => Arc::new(Value::Array(builder.build()?)),
        };
        let schema = builder.build_schema()?;
        let names = self.commands.iter().map(|e| json!({"name": e.def.name})).collect();
        Ok(Compiled { schema, introspection, names: Value::Array(names) })
    }
}

impl Commands for Registry {
    fn lookup(&self, name: &str) -> Option<CommandInfo> {
        let &i = self.index.get(name)?;
        Some(CommandInfo { allow_oob: self.commands[i].def.allow_oob })
    }
}

/// Deserialises validated arguments; a type that takes no arguments (`()`, a unit struct)
/// deserialises from `null` when the object is empty.
fn deserialize_arguments<A: DeserializeOwned>(arguments: Map<String, Value>) -> Result<A, serde_json::Error> {
    let empty = arguments.is_empty();
    match serde_json::from_value(Value::Object(arguments)) {
        Ok(args) => Ok(args),
        Err(err) if empty => serde_json::from_value(Value::Null).map_err(|_| err),
        Err(err) => Err(err),
    }
}

/// Serialises a handler's result; nothing (`()`, `None`) becomes `{}` as the QMP
/// specification asks.
fn serialize_return<R: Serialize>(value: &R) -> CommandResult {
    match serde_json::to_value(value) {
        Ok(Value::Null) => Ok(json!({})),
        Ok(value) => Ok(value),
        Err(err) => Err(QmpError::generic(format!("the command's result could not be serialised: {err}"))),
    }
}

/// An argument error as the dialect words it: today's `GenericError`, or the 2010 classes
/// with their `data`.
fn argument_error(err: &ArgumentError, dialect: Dialect) -> QmpError {
    if dialect == Dialect::Modern {
        return QmpError::generic(err.desc());
    }
    let name = err.name().to_owned();
    let (class, desc, data) = match err.kind() {
        ArgumentErrorKind::Missing => {
            ("MissingParameter", format!("Parameter '{name}' is missing"), json!({"name": name}))
        }
        ArgumentErrorKind::Unexpected => {
            ("InvalidParameter", format!("Invalid parameter '{name}'"), json!({"name": name}))
        }
        ArgumentErrorKind::InvalidType => {
            let expected = err.desc().rsplit(": ").next().unwrap_or_default().to_owned();
            (
                "InvalidParameterType",
                format!("Invalid parameter type, expected: {expected}"),
                json!({"name": name, "expected": expected}),
            )
        }
        _ => (
            "InvalidParameterValue",
            format!("Parameter '{name}' expects a valid value"),
            json!({"name": name, "expected": "a valid value"}),
        ),
    };
    QmpError { class: ErrorClass::from_name(class), desc, data: Some(data) }
}

/// An fd error: `GenericError` today, the seed's own classes in the 2010 dialect.
fn fd_error(ctx: &Context, seed_class: &str, desc: &str, data: Value) -> QmpError {
    match ctx.shared.dialect {
        Dialect::Modern => QmpError::generic(desc),
        Dialect::Seed2010 => {
            QmpError { class: ErrorClass::from_name(seed_class), desc: desc.to_owned(), data: Some(data) }
        }
    }
}

/// The types the built-in commands use, after QEMU's `qapi/control.json`,
/// `qapi/introspect.json` and `qapi/misc.json`.
fn builtin_types() -> Vec<TypeDef> {
    let str_list = || TypeRef::array(Builtin::Str);
    let object =
        |name: &str, members: Vec<MemberDef>| members.into_iter().fold(ObjectDef::new(name), ObjectDef::member).into();
    vec![
        EnumDef::new("qmpkit.QMPCapability", ["oob"]).into(),
        object("qmpkit.CommandInfo", vec![MemberDef::new("name", "str")]),
        object(
            "qmpkit.VersionTriple",
            vec![MemberDef::new("major", "int"), MemberDef::new("minor", "int"), MemberDef::new("micro", "int")],
        ),
        object(
            "qmpkit.VersionInfo",
            vec![MemberDef::new("qemu", "qmpkit.VersionTriple"), MemberDef::new("package", "str")],
        ),
        object("qmpkit.AddfdInfo", vec![MemberDef::new("fdset-id", "int"), MemberDef::new("fd", "int")]),
        object("qmpkit.FdsetFdInfo", vec![MemberDef::new("fd", "int"), MemberDef::optional("opaque", "str")]),
        object(
            "qmpkit.FdsetInfo",
            vec![MemberDef::new("fdset-id", "int"), MemberDef::new("fds", TypeRef::array("qmpkit.FdsetFdInfo"))],
        ),
        EnumDef::new("qmpkit.SchemaMetaType", ["builtin", "enum", "array", "object", "alternate", "command", "event"])
            .into(),
        EnumDef::new("qmpkit.JSONType", ["string", "number", "int", "boolean", "null", "object", "array", "value"])
            .into(),
        ObjectDef::new("qmpkit.SchemaInfo")
            .member(MemberDef::new("name", "str"))
            .member(MemberDef::new("meta-type", "qmpkit.SchemaMetaType"))
            .member(MemberDef::optional("features", str_list()))
            .union(
                "meta-type",
                [
                    ("builtin", "qmpkit.SchemaInfoBuiltin"),
                    ("enum", "qmpkit.SchemaInfoEnum"),
                    ("array", "qmpkit.SchemaInfoArray"),
                    ("object", "qmpkit.SchemaInfoObject"),
                    ("alternate", "qmpkit.SchemaInfoAlternate"),
                    ("command", "qmpkit.SchemaInfoCommand"),
                    ("event", "qmpkit.SchemaInfoEvent"),
                ],
            )
            .into(),
        object("qmpkit.SchemaInfoBuiltin", vec![MemberDef::new("json-type", "qmpkit.JSONType")]),
        object(
            "qmpkit.SchemaInfoEnumMember",
            vec![MemberDef::new("name", "str"), MemberDef::optional("features", str_list())],
        ),
        object(
            "qmpkit.SchemaInfoEnum",
            vec![
                MemberDef::new("members", TypeRef::array("qmpkit.SchemaInfoEnumMember")),
                MemberDef::new("values", str_list()),
            ],
        ),
        object("qmpkit.SchemaInfoArray", vec![MemberDef::new("element-type", "str")]),
        object(
            "qmpkit.SchemaInfoObjectMember",
            vec![
                MemberDef::new("name", "str"),
                MemberDef::new("type", "str"),
                MemberDef::optional("default", "any"),
                MemberDef::optional("features", str_list()),
            ],
        ),
        object("qmpkit.SchemaInfoObjectVariant", vec![MemberDef::new("case", "str"), MemberDef::new("type", "str")]),
        object(
            "qmpkit.SchemaInfoObject",
            vec![
                MemberDef::new("members", TypeRef::array("qmpkit.SchemaInfoObjectMember")),
                MemberDef::optional("tag", "str"),
                MemberDef::optional("variants", TypeRef::array("qmpkit.SchemaInfoObjectVariant")),
            ],
        ),
        object("qmpkit.SchemaInfoAlternateMember", vec![MemberDef::new("type", "str")]),
        object(
            "qmpkit.SchemaInfoAlternate",
            vec![MemberDef::new("members", TypeRef::array("qmpkit.SchemaInfoAlternateMember"))],
        ),
        object(
            "qmpkit.SchemaInfoCommand",
            vec![
                MemberDef::new("arg-type", "str"),
                MemberDef::new("ret-type", "str"),
                MemberDef::optional("allow-oob", "bool"),
            ],
        ),
        object("qmpkit.SchemaInfoEvent", vec![MemberDef::new("arg-type", "str")]),
    ]
}
