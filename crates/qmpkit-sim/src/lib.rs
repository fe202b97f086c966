//! A simulated QEMU monitor, built on the `qmpkit::server` library.
//!
//! The simulator speaks QMP as QEMU 7.2 or 10.0 does, to test clients without starting a
//! virtual machine: a machine with QEMU's run states (`prelaunch`, `running`, `paused`,
//! `suspended`, `shutdown`, `guest-panicked`, ...), the events QEMU emits for each
//! transition in QEMU's order relative to the command's reply, two drives, a balloon,
//! hot-pluggable devices, a small QOM tree and backup jobs whose progress moves over time.
//! Commands are described by QEMU's own schema for the chosen version (see
//! [`Profile`]), so argument errors carry QEMU's texts and `query-qmp-schema` describes them
//! as QEMU does.
//!
//! ```
//! use qmpkit_sim::{RunState, Sim};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Sim::builder().version("7.2").paused(true).name("vm1").start().await?;
//! let qmp = qmpkit::Client::connect(&sim.endpoint().to_string()).await?;
//! assert_eq!(qmp.query_status().await?.status, RunState::Prelaunch);
//! qmp.cont().await?;
//! assert_eq!(sim.machine().run_state(), RunState::Running);
//! // Script the guest from Rust: it panics, and the client sees the events.
//! sim.machine().guest_panic();
//! sim.stop().await?;
//! # Ok(()) }
//! ```
//!
//! Guest-side happenings (a guest shutdown, a watchdog, an RTC change, a disk error, a
//! panic, a failing job) are methods of [`Machine`]; with [`SimBuilder::faults`] a client
//! can trigger them too, through downstream commands named by the QMP specification's rule
//! (`__org.qmpkit_guest-panic`, ...), which then appear in `query-qmp-schema`.
//!
//! # Layout
//! - [`profile`]: the versions and QEMU's schema for each.
//! - [`machine`]: the machine's state and its transitions.
//! - `commands`: the command handlers, the HMP subset and the downstream fault commands.
//! - `schema`: QEMU's schema turned into the server library's definitions.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use qmpkit::server::{ClientPolicy, RegistryError, Server, ServerBuilder};
use qmpkit::transport::{Endpoint, Listener};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;

mod commands;
pub mod machine;
pub mod profile;
mod schema;

pub use commands::{COMMANDS, DOWNSTREAM_PREFIX, EVENTS};
pub use machine::{Machine, RunState};
pub use profile::{PROFILES, Profile, QEMU_7_2, QEMU_10_0};

/// Why a simulator could not be made or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// No profile imitates the version asked for.
    #[error("no simulator profile for QEMU version '{asked}' (known: {known})")]
    UnknownVersion {
        /// The version asked for.
        asked: String,
        /// The versions with a profile.
        known: String,
    },
    /// A profile's schema data is damaged (a bug in this crate).
    #[error("the profile's schema is invalid: {0}")]
    Schema(String),
    /// The commands did not register (a bug in this crate).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Binding a listener failed.
    #[error("cannot listen: {0}")]
    Io(#[from] io::Error),
}

/// A change to the server's builder, see [`SimBuilder::server`].
type AdjustServer = Box<dyn FnOnce(ServerBuilder) -> ServerBuilder + Send>;

/// Builds a [`Sim`].
#[must_use]
pub struct SimBuilder {
    profile: Result<Profile, SimError>,
    paused: bool,
    name: Option<String>,
    uuid: Option<String>,
    package: String,
    faults: bool,
    no_shutdown: bool,
    acpi_guest: bool,
    clients: ClientPolicy,
    server: Option<AdjustServer>,
    endpoints: Vec<Endpoint>,
}

impl std::fmt::Debug for SimBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBuilder")
            .field("profile", &self.profile)
            .field("paused", &self.paused)
            .field("name", &self.name)
            .field("faults", &self.faults)
            .field("clients", &self.clients)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl SimBuilder {
    /// How many clients each monitor serves at once: [`ClientPolicy::One`] by default, as
    /// QEMU (a second client's connection completes but hears nothing until the first
    /// leaves); [`ClientPolicy::Many`] serves every client at once.
    pub fn clients(mut self, clients: ClientPolicy) -> Self {
        self.clients = clients;
        self
    }

    /// Adjusts the server beyond what QEMU's command line sets (limits, `pretty`, the 2010
    /// dialect, no `oob`), for tests of protocol corners; applied last.
    pub fn server(mut self, adjust: impl FnOnce(ServerBuilder) -> ServerBuilder + Send + 'static) -> Self {
        self.server = Some(Box::new(adjust));
        self
    }

    /// Imitates QEMU `MAJOR.MINOR[.MICRO]` (10.0 by default); an unknown version makes
    /// [`SimBuilder::build`] fail with [`SimError::UnknownVersion`].
    pub fn version(mut self, version: &str) -> Self {
        self.profile = Profile::for_version(version);
        self
    }

    /// Imitates this profile.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = Ok(profile);
        self
    }

    /// Starts paused in `prelaunch`, as QEMU's `-S` (running by default).
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }

    /// Names the machine (`-name`); `query-name` reports it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the machine's UUID (`-uuid`; all zeros by default, as QEMU's).
    pub fn uuid(mut self, uuid: impl Into<String>) -> Self {
        self.uuid = Some(uuid.into());
        self
    }

    /// Sets the `package` string of the version (`qmpkit-sim` by default).
    pub fn package(mut self, package: impl Into<String>) -> Self {
        self.package = package.into();
        self
    }

    /// Adds the downstream commands with which clients trigger guest-side happenings.
    pub fn faults(mut self, faults: bool) -> Self {
        self.faults = faults;
        self
    }

    /// Keeps the machine after a guest shutdown or panic, stopped, as QEMU's
    /// `-no-shutdown`; by default the simulator exits as QEMU does.
    pub fn no_shutdown(mut self, no_shutdown: bool) -> Self {
        self.no_shutdown = no_shutdown;
        self
    }

    /// Gives the machine a guest that powers off when the ACPI power button is pressed
    /// (`system_powerdown`), as a guest OS does; by default nothing reacts, as in QEMU
    /// without a guest OS.
    pub fn acpi_guest(mut self, acpi_guest: bool) -> Self {
        self.acpi_guest = acpi_guest;
        self
    }

    /// Listens on `endpoint` when started (a unix socket in a private temporary directory
    /// when no endpoint is given).
    pub fn listen(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Builds the simulator without any IO.
    ///
    /// # Errors
    /// [`SimError::UnknownVersion`] for a version without a profile; the other variants
    /// only for a damaged profile.
    pub fn build(self) -> Result<Sim, SimError> {
        let profile = self.profile?;
        let registry = commands::lazy_registry(&profile, self.faults);
        let config = machine::MachineConfig {
            profile,
            paused: self.paused,
            name: self.name,
            uuid: self.uuid.unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into()),
            no_shutdown: self.no_shutdown,
            acpi_guest: self.acpi_guest,
            ram: 128 << 20,
        };
        let version = (profile.major, profile.minor, profile.micro);
        let machine = Machine::new(config);
        let mut builder = Server::builder()
            .version(version.0, version.1, version.2)
            .package(&self.package)
            .clients(self.clients)
            .lazy_registry(registry)
            .data(Arc::new(machine.clone()));
        if let Some(adjust) = self.server {
            builder = adjust(builder);
        }
        let server = builder.build()?;
        machine.attach(server.events());
        Ok(Sim { server, machine, endpoints: self.endpoints })
    }

    /// Builds the simulator and serves it on its endpoints in a background task.
    ///
    /// # Errors
    /// As [`SimBuilder::build`], and [`SimError::Io`] when binding fails.
    pub async fn start(self) -> Result<RunningSim, SimError> {
        let sim = self.build()?;
        sim.start().await
    }
}

/// A simulated QEMU: its server and its machine.
#[derive(Clone, Debug)]
pub struct Sim {
    server: Server,
    machine: Machine,
    endpoints: Vec<Endpoint>,
}

impl Sim {
    /// A builder: QEMU 10.0, running, no name, no fault commands, one client at a time.
    pub fn builder() -> SimBuilder {
        SimBuilder {
            profile: Ok(Profile::default()),
            paused: false,
            name: None,
            uuid: None,
            package: "qmpkit-sim".into(),
            faults: false,
            no_shutdown: false,
            acpi_guest: false,
            clients: ClientPolicy::One,
            server: None,
            endpoints: Vec::new(),
        }
    }

    /// The QMP server.
    #[must_use]
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The machine, to inspect it or script the guest.
    #[must_use]
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Serves one client over an in-memory pipe and returns the client's end. When the
    /// machine exits (`quit`), the server closes the pipe after the reply, as QEMU closes
    /// its socket. Must be called within a tokio runtime.
    #[must_use]
    pub fn connect_pair(&self) -> DuplexStream {
        let (client, io) = tokio::io::duplex(64 << 10);
        let server = self.server.clone();
        let mut exit = self.machine.exit_signal();
        tokio::spawn(async move {
            let serve = server.serve_connection(io);
            tokio::pin!(serve);
            tokio::select! {
                _ = &mut serve => return,
                _ = exit.wait_for(|exited| *exited) => server.exit(),
            }
            let _ = serve.await;
        });
        client
    }

    /// Serves clients on `listeners` until the machine exits (`quit`, a guest shutdown) or
    /// [`Server::shutdown`] is called; then every connection gets its last reply and is
    /// closed, and unix socket files are removed.
    ///
    /// # Errors
    /// As [`Server::serve`].
    pub async fn serve(&self, listeners: Vec<Listener>) -> io::Result<()> {
        let mut exit = self.machine.exit_signal();
        let server = self.server.clone();
        let exited = async move {
            let _ = exit.wait_for(|exited| *exited).await;
            // As QEMU exits: what clients queued behind is left unanswered.
            server.exit();
        };
        self.server.serve(listeners, exited).await
    }

    /// Binds the builder's endpoints (or a unix socket in a private temporary directory)
    /// and serves them in a background task.
    ///
    /// # Errors
    /// [`SimError::Io`] when binding fails.
    pub async fn start(self) -> Result<RunningSim, SimError> {
        let mut endpoints = self.endpoints.clone();
        let dir = if endpoints.is_empty() {
            let dir = tempfile::Builder::new().prefix("qmpkit-sim").tempdir()?;
            endpoints.push(Endpoint::Unix(dir.path().join("qmp.sock")));
            Some(dir)
        } else {
            None
        };
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for endpoint in &endpoints {
            let listener = self.server.bind(endpoint).await?;
            bound.push(listener.local_endpoint()?);
            listeners.push(listener);
        }
        let sim = self.clone();
        let task = tokio::spawn(async move { sim.serve(listeners).await });
        Ok(RunningSim { sim: self, endpoints: bound, task, _dir: dir })
    }
}

/// A simulator serving in a background task; dropping it leaves the task running until the
/// machine exits, [`RunningSim::stop`] ends it.
#[derive(Debug)]
pub struct RunningSim {
    sim: Sim,
    endpoints: Vec<Endpoint>,
    task: JoinHandle<io::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl RunningSim {
    /// The first address it listens on.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoints[0]
    }

    /// Every address it listens on (TCP port 0 resolved to the real port).
    #[must_use]
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The unix socket paths it listens on.
    #[must_use]
    pub fn socket_paths(&self) -> Vec<PathBuf> {
        self.endpoints
            .iter()
            .filter_map(|e| match e {
                Endpoint::Unix(path) => Some(path.clone()),
                Endpoint::Tcp { .. } => None,
            })
            .collect()
    }

    /// The simulator.
    #[must_use]
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The machine, to inspect it or script the guest.
    #[must_use]
    pub fn machine(&self) -> &Machine {
        &self.sim.machine
    }

    /// Stops serving: every connection gets the replies of running commands and is closed.
    ///
    /// # Errors
    /// The serving task's error, if it failed.
    pub async fn stop(self) -> io::Result<()> {
        self.sim.server.shutdown();
        self.wait().await
    }

    /// Waits until the simulator ends by itself (the machine exits).
    ///
    /// # Errors
    /// The serving task's error, if it failed or panicked.
    pub async fn wait(self) -> io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(err) => Err(io::Error::other(err)),
        }
    }
}
