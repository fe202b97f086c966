//! Typed calls for the commands most clients use. Each is a thin wrapper over
//! [`Client::execute`] that builds the arguments and decodes the result with the types in
//! [`crate::types`], which never fail on what newer QEMUs add.

use std::os::fd::OwnedFd;
use std::time::Duration;

use qmpkit_proto::{Event, VersionInfo};
use serde_json::{Map, Value, json};

use super::{Client, EventFilter};
use crate::error::Error;
use crate::types::{
    AddFdInfo, BlockInfo, CommandInfo, CpuInfoFast, FdsetInfo, JobInfo, KvmInfo, NameInfo, ObjectPropertyInfo,
    StatusInfo, UuidInfo,
};

impl Client {
    async fn execute_unit(&self, name: &str, arguments: Value) -> Result<(), Error> {
        self.execute(name, arguments).await.map(drop)
    }

    /// `qmp_capabilities`. The client negotiates by itself when it connects; sending it again
    /// yields QEMU's `CommandNotFound` error.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn qmp_capabilities(&self, enable: &[&str]) -> Result<(), Error> {
        self.execute_unit("qmp_capabilities", json!({"enable": enable})).await
    }

    /// `query-version`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_version(&self) -> Result<VersionInfo, Error> {
        let value = self.execute("query-version", ()).await?;
        VersionInfo::from_value(&value)
            .map_err(|reason| Error::Decode { command: "query-version".into(), reason: reason.into() })
    }

    /// `query-status`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_status(&self) -> Result<StatusInfo, Error> {
        self.execute_as("query-status", ()).await
    }

    /// `stop`: pauses the VM (a `STOP` event follows when it was running).
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn stop(&self) -> Result<(), Error> {
        self.execute_unit("stop", Value::Null).await
    }

    /// `cont`: resumes the VM (a `RESUME` event follows when it was paused).
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn cont(&self) -> Result<(), Error> {
        self.execute_unit("cont", Value::Null).await
    }

    /// `system_reset` (a `RESET` event follows).
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn system_reset(&self) -> Result<(), Error> {
        self.execute_unit("system_reset", Value::Null).await
    }

    /// `system_powerdown`: asks the guest to power down; it may ignore the request.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn system_powerdown(&self) -> Result<(), Error> {
        self.execute_unit("system_powerdown", Value::Null).await
    }

    /// `system_powerdown`, then waits for `SHUTDOWN`.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the guest does not shut down in time, and the errors of
    /// [`Client::execute_and_wait`].
    pub async fn system_powerdown_and_wait(&self, timeout: Duration) -> Result<Event, Error> {
        Ok(self.execute_and_wait("system_powerdown", (), "SHUTDOWN", timeout).await?.1)
    }

    /// `system_wakeup`: wakes a suspended guest.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn system_wakeup(&self) -> Result<(), Error> {
        self.execute_unit("system_wakeup", Value::Null).await
    }

    /// `quit`: QEMU exits. The end of the stream that follows counts as success.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn quit(&self) -> Result<(), Error> {
        self.execute_unit("quit", Value::Null).await
    }

    /// `query-kvm`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_kvm(&self) -> Result<KvmInfo, Error> {
        self.execute_as("query-kvm", ()).await
    }

    /// `query-name`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_name(&self) -> Result<NameInfo, Error> {
        self.execute_as("query-name", ()).await
    }

    /// `query-uuid`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_uuid(&self) -> Result<UuidInfo, Error> {
        self.execute_as("query-uuid", ()).await
    }

    /// `query-commands`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_commands(&self) -> Result<Vec<CommandInfo>, Error> {
        self.execute_as("query-commands", ()).await
    }

    /// `query-qmp-schema`, loaded into a [`qmpkit_schema::Schema`] for lookups, validation and
    /// help.
    ///
    /// # Errors
    /// [`Error::Decode`] when the schema does not load, and the errors of [`Client::execute`].
    pub async fn query_qmp_schema(&self) -> Result<qmpkit_schema::Schema, Error> {
        let value = self.execute("query-qmp-schema", ()).await?;
        qmpkit_schema::Schema::from_value(value)
            .map_err(|e| Error::Decode { command: "query-qmp-schema".into(), reason: e.to_string() })
    }

    /// `human-monitor-command`: runs an HMP command line and returns its output. HMP reports
    /// its own errors as output text, not as QMP errors.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn human_monitor_command(&self, command_line: &str) -> Result<String, Error> {
        self.execute_as("human-monitor-command", json!({"command-line": command_line})).await
    }

    /// `getfd`: gives QEMU a file descriptor under a name.
    ///
    /// # Errors
    /// As [`Client::execute_with_fds`].
    pub async fn getfd(&self, fdname: &str, fd: OwnedFd) -> Result<(), Error> {
        self.execute_with_fds("getfd", json!({"fdname": fdname}), [fd]).await.map(drop)
    }

    /// `closefd`.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn closefd(&self, fdname: &str) -> Result<(), Error> {
        self.execute_unit("closefd", json!({"fdname": fdname})).await
    }

    /// `add-fd`: adds a file descriptor to an fd set (a new one when `fdset_id` is `None`).
    ///
    /// # Errors
    /// As [`Client::execute_with_fds`].
    pub async fn add_fd(&self, fd: OwnedFd, fdset_id: Option<i64>, opaque: Option<&str>) -> Result<AddFdInfo, Error> {
        let mut arguments = Map::new();
        if let Some(id) = fdset_id {
            arguments.insert("fdset-id".into(), id.into());
        }
        if let Some(opaque) = opaque {
            arguments.insert("opaque".into(), opaque.into());
        }
        let value = self.execute_with_fds("add-fd", arguments, [fd]).await?;
        serde_json::from_value(value).map_err(|e| Error::Decode { command: "add-fd".into(), reason: e.to_string() })
    }

    /// `remove-fd`: removes one descriptor, or the whole set when `fd` is `None`.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn remove_fd(&self, fdset_id: i64, fd: Option<i64>) -> Result<(), Error> {
        let mut arguments = json!({"fdset-id": fdset_id});
        if let Some(fd) = fd {
            arguments["fd"] = fd.into();
        }
        self.execute_unit("remove-fd", arguments).await
    }

    /// `query-fdsets`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_fdsets(&self) -> Result<Vec<FdsetInfo>, Error> {
        self.execute_as("query-fdsets", ()).await
    }

    /// `query-cpus-fast`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_cpus_fast(&self) -> Result<Vec<CpuInfoFast>, Error> {
        self.execute_as("query-cpus-fast", ()).await
    }

    /// `query-block`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_block(&self) -> Result<Vec<BlockInfo>, Error> {
        self.execute_as("query-block", ()).await
    }

    /// `query-jobs`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn query_jobs(&self) -> Result<Vec<JobInfo>, Error> {
        self.execute_as("query-jobs", ()).await
    }

    /// `qom-list`: the properties of the object at `path`.
    ///
    /// # Errors
    /// As [`Client::execute_as`].
    pub async fn qom_list(&self, path: &str) -> Result<Vec<ObjectPropertyInfo>, Error> {
        self.execute_as("qom-list", json!({"path": path})).await
    }

    /// `qom-get`.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn qom_get(&self, path: &str, property: &str) -> Result<Value, Error> {
        self.execute("qom-get", json!({"path": path, "property": property})).await
    }

    /// `qom-set`.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn qom_set(&self, path: &str, property: &str, value: Value) -> Result<(), Error> {
        self.execute_unit("qom-set", json!({"path": path, "property": property, "value": value})).await
    }

    /// `device_add` with a driver, an optional id and any further device properties.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn device_add(
        &self,
        driver: &str,
        id: Option<&str>,
        properties: Map<String, Value>,
    ) -> Result<(), Error> {
        let mut arguments = properties;
        arguments.insert("driver".into(), driver.into());
        if let Some(id) = id {
            arguments.insert("id".into(), id.into());
        }
        self.execute_unit("device_add", Value::Object(arguments)).await
    }

    /// `device_del`: asks for a device's removal, which completes with `DEVICE_DELETED`.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn device_del(&self, id: &str) -> Result<(), Error> {
        self.execute_unit("device_del", json!({"id": id})).await
    }

    /// `device_del`, then waits for the `DEVICE_DELETED` event of that device.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the guest does not release the device in time, and the errors
    /// of [`Client::execute_and_wait`].
    pub async fn device_del_and_wait(&self, id: &str, timeout: Duration) -> Result<Event, Error> {
        let wanted = id.to_owned();
        let filter = EventFilter::names(["DEVICE_DELETED"]).with_predicate(move |event| {
            let data = event.data.as_ref();
            let device = data.and_then(|d| d.get("device")).and_then(Value::as_str);
            let path = data.and_then(|d| d.get("path")).and_then(Value::as_str);
            device == Some(wanted.as_str()) || path == Some(wanted.as_str())
        });
        Ok(self.execute_and_wait("device_del", json!({"id": id}), filter, timeout).await?.1)
    }
}
