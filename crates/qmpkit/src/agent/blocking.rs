//! A blocking guest agent client, for callers without async.
//!
//! The agent needs no background task (nothing arrives unasked), so each call simply runs the
//! async [`super::Agent`]'s call to completion on a private current-thread runtime. Calls may
//! come from several threads; they take turns on the channel as async callers do.
//!
//! ```no_run
//! # fn demo() -> Result<(), qmpkit::Error> {
//! let agent = qmpkit::agent::blocking::Agent::new("/run/qemu/vm1-qga.sock")?;
//! agent.wait_ready(std::time::Duration::from_secs(30))?;
//! agent.ping()?;
//! # Ok(()) }
//! ```
//!
//! It must not be used from inside an async runtime, where blocking would stall that runtime.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::runtime::Runtime;

use super::{
    AgentBuilder, AgentCallOptions, Exec, ExecOutput, FsfreezeStatus, GuestFilesystemInfo, GuestInfo,
    GuestNetworkInterface, GuestOsInfo,
};
use crate::error::Error;

/// A blocking handle to a guest agent. Clones share the channel.
#[derive(Clone, Debug)]
pub struct Agent {
    runtime: Arc<Runtime>,
    inner: super::Agent,
}

impl Agent {
    /// An agent at an endpoint with the default settings; nothing is opened until first use.
    ///
    /// # Errors
    /// [`Error::Connect`] when the private runtime cannot be created.
    pub fn new(endpoint: impl AsRef<str>) -> Result<Agent, Error> {
        Agent::with_builder(AgentBuilder::new(), endpoint)
    }

    /// An agent at an endpoint with these settings; nothing is opened until first use.
    ///
    /// # Errors
    /// [`Error::Connect`] when the private runtime cannot be created.
    pub fn with_builder(builder: AgentBuilder, endpoint: impl AsRef<str>) -> Result<Agent, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Connect { endpoint: "(runtime)".into(), source: Arc::new(e) })?;
        // The endpoint is only parsed here; connecting happens inside the runtime on first use.
        let inner = builder.build(endpoint);
        Ok(Agent { runtime: Arc::new(runtime), inner })
    }

    /// The async agent underneath, for code that has a runtime.
    #[must_use]
    pub fn as_async(&self) -> &super::Agent {
        &self.inner
    }

    /// As [`super::Agent::sync`].
    ///
    /// # Errors
    /// As [`super::Agent::sync`].
    pub fn sync(&self) -> Result<(), Error> {
        self.runtime.block_on(self.inner.sync())
    }

    /// As [`super::Agent::wait_ready`].
    ///
    /// # Errors
    /// As [`super::Agent::wait_ready`].
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        self.runtime.block_on(self.inner.wait_ready(timeout))
    }

    /// As [`super::Agent::execute`].
    ///
    /// # Errors
    /// As [`super::Agent::execute`].
    pub fn execute(&self, name: &str, arguments: impl Serialize) -> Result<Value, Error> {
        self.runtime.block_on(self.inner.execute(name, arguments))
    }

    /// As [`super::Agent::execute_as`].
    ///
    /// # Errors
    /// As [`super::Agent::execute_as`].
    pub fn execute_as<R: DeserializeOwned>(&self, name: &str, arguments: impl Serialize) -> Result<R, Error> {
        self.runtime.block_on(self.inner.execute_as(name, arguments))
    }

    /// As [`super::Agent::execute_with`].
    ///
    /// # Errors
    /// As [`super::Agent::execute_with`].
    pub fn execute_with(
        &self,
        name: &str,
        arguments: impl Serialize,
        options: AgentCallOptions,
    ) -> Result<Value, Error> {
        self.runtime.block_on(self.inner.execute_with(name, arguments, options))
    }

    /// As [`super::Agent::ping`].
    ///
    /// # Errors
    /// As [`super::Agent::ping`].
    pub fn ping(&self) -> Result<(), Error> {
        self.runtime.block_on(self.inner.ping())
    }

    /// As [`super::Agent::info`].
    ///
    /// # Errors
    /// As [`super::Agent::info`].
    pub fn info(&self) -> Result<GuestInfo, Error> {
        self.runtime.block_on(self.inner.info())
    }

    /// As [`super::Agent::osinfo`].
    ///
    /// # Errors
    /// As [`super::Agent::osinfo`].
    pub fn osinfo(&self) -> Result<GuestOsInfo, Error> {
        self.runtime.block_on(self.inner.osinfo())
    }

    /// As [`super::Agent::host_name`].
    ///
    /// # Errors
    /// As [`super::Agent::host_name`].
    pub fn host_name(&self) -> Result<String, Error> {
        self.runtime.block_on(self.inner.host_name())
    }

    /// As [`super::Agent::time`].
    ///
    /// # Errors
    /// As [`super::Agent::time`].
    pub fn time(&self) -> Result<i64, Error> {
        self.runtime.block_on(self.inner.time())
    }

    /// As [`super::Agent::network_interfaces`].
    ///
    /// # Errors
    /// As [`super::Agent::network_interfaces`].
    pub fn network_interfaces(&self) -> Result<Vec<GuestNetworkInterface>, Error> {
        self.runtime.block_on(self.inner.network_interfaces())
    }

    /// As [`super::Agent::fsinfo`].
    ///
    /// # Errors
    /// As [`super::Agent::fsinfo`].
    pub fn fsinfo(&self) -> Result<Vec<GuestFilesystemInfo>, Error> {
        self.runtime.block_on(self.inner.fsinfo())
    }

    /// As [`super::Agent::fsfreeze_status`].
    ///
    /// # Errors
    /// As [`super::Agent::fsfreeze_status`].
    pub fn fsfreeze_status(&self) -> Result<FsfreezeStatus, Error> {
        self.runtime.block_on(self.inner.fsfreeze_status())
    }

    /// As [`super::Agent::exec`].
    ///
    /// # Errors
    /// As [`super::Agent::exec`].
    pub fn exec(&self, exec: Exec) -> Result<ExecOutput, Error> {
        self.runtime.block_on(self.inner.exec(exec))
    }

    /// As [`super::Agent::read_file`].
    ///
    /// # Errors
    /// As [`super::Agent::read_file`].
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, Error> {
        self.runtime.block_on(self.inner.read_file(path))
    }

    /// As [`super::Agent::write_file`].
    ///
    /// # Errors
    /// As [`super::Agent::write_file`].
    pub fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), Error> {
        self.runtime.block_on(self.inner.write_file(path, contents))
    }

    /// As [`super::Agent::shutdown`].
    ///
    /// # Errors
    /// As [`super::Agent::shutdown`].
    pub fn shutdown(&self, mode: Option<&str>) -> Result<(), Error> {
        self.runtime.block_on(self.inner.shutdown(mode))
    }
}
