//! Convenient methods for the commands most clients use. Each is a thin wrapper over
//! [`Client::run`] with the command types in [`crate::commands`], whose results (in
//! [`crate::types`]) never fail on what newer QEMUs add. For a deadline or out-of-band
//! execution, run the command type with [`Client::run_with`].

use std::os::fd::OwnedFd;
use std::time::Duration;

use qmpkit_proto::{Event, VersionInfo};
use serde_json::{Map, Value};

use super::{Client, EventFilter};
use crate::commands::{
    AddFd, Closefd, Command as _, Cont, DeviceAdd, DeviceDel, Getfd, HumanMonitorCommand, QmpCapabilities, QomGet,
    QomList, QomSet, QueryBlock, QueryCommands, QueryCpusFast, QueryFdsets, QueryJobs, QueryKvm, QueryName,
    QueryQmpSchema, QueryStatus, QueryUuid, QueryVersion, Quit, RemoveFd, Stop, SystemPowerdown, SystemReset,
    SystemWakeup,
};
use crate::error::Error;
use crate::types::{
    AddFdInfo, BlockInfo, CommandInfo, CpuInfoFast, FdsetInfo, JobInfo, KvmInfo, NameInfo, ObjectPropertyInfo,
    StatusInfo, UuidInfo,
};

impl Client {
    /// `qmp_capabilities` ([`QmpCapabilities`]). The client negotiates by itself when it
    /// connects; sending it again yields QEMU's `CommandNotFound` error.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn qmp_capabilities(&self, enable: &[&str]) -> Result<(), Error> {
        let enable = Some(enable.iter().map(|&c| c.to_owned()).collect());
        self.run(QmpCapabilities { enable }).await.map(drop)
    }

    /// `query-version` ([`QueryVersion`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_version(&self) -> Result<VersionInfo, Error> {
        self.run(QueryVersion).await.map(Into::into)
    }

    /// `query-status` ([`QueryStatus`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_status(&self) -> Result<StatusInfo, Error> {
        self.run(QueryStatus).await
    }

    /// `stop` ([`Stop`]): pauses the VM (a `STOP` event follows when it was running).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn stop(&self) -> Result<(), Error> {
        self.run(Stop).await.map(drop)
    }

    /// `cont` ([`Cont`]): resumes the VM (a `RESUME` event follows when it was paused).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn cont(&self) -> Result<(), Error> {
        self.run(Cont).await.map(drop)
    }

    /// `system_reset` ([`SystemReset`]; a `RESET` event follows).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn system_reset(&self) -> Result<(), Error> {
        self.run(SystemReset).await.map(drop)
    }

    /// `system_powerdown` ([`SystemPowerdown`]): asks the guest to power down; it may ignore
    /// the request.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn system_powerdown(&self) -> Result<(), Error> {
        self.run(SystemPowerdown).await.map(drop)
    }

    /// `system_powerdown`, then waits for `SHUTDOWN`.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the guest does not shut down in time, and the errors of
    /// [`Client::run_and_wait`].
    pub async fn system_powerdown_and_wait(&self, timeout: Duration) -> Result<Event, Error> {
        Ok(self.run_and_wait(SystemPowerdown, "SHUTDOWN", timeout).await?.1)
    }

    /// `system_wakeup` ([`SystemWakeup`]): wakes a suspended guest.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn system_wakeup(&self) -> Result<(), Error> {
        self.run(SystemWakeup).await.map(drop)
    }

    /// `quit` ([`Quit`]): QEMU exits. The end of the stream that follows counts as success.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn quit(&self) -> Result<(), Error> {
        self.run(Quit).await.map(drop)
    }

    /// `query-kvm` ([`QueryKvm`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_kvm(&self) -> Result<KvmInfo, Error> {
        self.run(QueryKvm).await
    }

    /// `query-name` ([`QueryName`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_name(&self) -> Result<NameInfo, Error> {
        self.run(QueryName).await
    }

    /// `query-uuid` ([`QueryUuid`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_uuid(&self) -> Result<UuidInfo, Error> {
        self.run(QueryUuid).await
    }

    /// `query-commands` ([`QueryCommands`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_commands(&self) -> Result<Vec<CommandInfo>, Error> {
        self.run(QueryCommands).await
    }

    /// `query-qmp-schema` ([`QueryQmpSchema`]), loaded into a [`qmpkit_schema::Schema`] for
    /// lookups, validation and help.
    ///
    /// # Errors
    /// [`Error::Decode`] when the schema does not load, and the errors of [`Client::run`].
    pub async fn query_qmp_schema(&self) -> Result<qmpkit_schema::Schema, Error> {
        let infos = self.run(QueryQmpSchema).await?;
        qmpkit_schema::Schema::from_infos(infos)
            .map_err(|e| Error::Decode { command: QueryQmpSchema::NAME.into(), reason: e.to_string() })
    }

    /// `human-monitor-command` ([`HumanMonitorCommand`]): runs an HMP command line and
    /// returns its output. HMP reports its own errors as output text, not as QMP errors.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn human_monitor_command(&self, command_line: &str) -> Result<String, Error> {
        self.run(HumanMonitorCommand::new(command_line)).await
    }

    /// `getfd` ([`Getfd`]): gives QEMU a file descriptor under a name.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn getfd(&self, fdname: &str, fd: OwnedFd) -> Result<(), Error> {
        self.run(Getfd::new(fdname, fd)).await.map(drop)
    }

    /// `closefd` ([`Closefd`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn closefd(&self, fdname: &str) -> Result<(), Error> {
        self.run(Closefd { fdname: fdname.to_owned() }).await.map(drop)
    }

    /// `add-fd` ([`AddFd`]): adds a file descriptor to an fd set (a new one when `fdset_id`
    /// is `None`).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn add_fd(&self, fd: OwnedFd, fdset_id: Option<i64>, opaque: Option<&str>) -> Result<AddFdInfo, Error> {
        self.run(AddFd { fdset_id, opaque: opaque.map(str::to_owned), fd: Some(fd) }).await
    }

    /// `remove-fd` ([`RemoveFd`]): removes one descriptor, or the whole set when `fd` is
    /// `None`.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn remove_fd(&self, fdset_id: i64, fd: Option<i64>) -> Result<(), Error> {
        self.run(RemoveFd { fdset_id, fd }).await.map(drop)
    }

    /// `query-fdsets` ([`QueryFdsets`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_fdsets(&self) -> Result<Vec<FdsetInfo>, Error> {
        self.run(QueryFdsets).await
    }

    /// `query-cpus-fast` ([`QueryCpusFast`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_cpus_fast(&self) -> Result<Vec<CpuInfoFast>, Error> {
        self.run(QueryCpusFast).await
    }

    /// `query-block` ([`QueryBlock`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_block(&self) -> Result<Vec<BlockInfo>, Error> {
        self.run(QueryBlock).await
    }

    /// `query-jobs` ([`QueryJobs`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn query_jobs(&self) -> Result<Vec<JobInfo>, Error> {
        self.run(QueryJobs).await
    }

    /// `qom-list` ([`QomList`]): the properties of the object at `path`.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn qom_list(&self, path: &str) -> Result<Vec<ObjectPropertyInfo>, Error> {
        self.run(QomList { path: path.to_owned() }).await
    }

    /// `qom-get` ([`QomGet`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn qom_get(&self, path: &str, property: &str) -> Result<Value, Error> {
        self.run(QomGet { path: path.to_owned(), property: property.to_owned() }).await
    }

    /// `qom-set` ([`QomSet`]).
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn qom_set(&self, path: &str, property: &str, value: Value) -> Result<(), Error> {
        self.run(QomSet { path: path.to_owned(), property: property.to_owned(), value }).await.map(drop)
    }

    /// `device_add` ([`DeviceAdd`]) with a driver, an optional id and any further device
    /// properties.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn device_add(
        &self,
        driver: &str,
        id: Option<&str>,
        properties: Map<String, Value>,
    ) -> Result<(), Error> {
        self.run(DeviceAdd { properties, driver: driver.to_owned(), id: id.map(str::to_owned) }).await.map(drop)
    }

    /// `device_del` ([`DeviceDel`]): asks for a device's removal, which completes with
    /// `DEVICE_DELETED`.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn device_del(&self, id: &str) -> Result<(), Error> {
        self.run(DeviceDel { id: id.to_owned() }).await.map(drop)
    }

    /// `device_del`, then waits for the `DEVICE_DELETED` event of that device.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the guest does not release the device in time, and the errors
    /// of [`Client::run_and_wait`].
    pub async fn device_del_and_wait(&self, id: &str, timeout: Duration) -> Result<Event, Error> {
        let wanted = id.to_owned();
        let filter = EventFilter::names(["DEVICE_DELETED"]).with_predicate(move |event| {
            let data = event.data.as_ref();
            let device = data.and_then(|d| d.get("device")).and_then(Value::as_str);
            let path = data.and_then(|d| d.get("path")).and_then(Value::as_str);
            device == Some(wanted.as_str()) || path == Some(wanted.as_str())
        });
        Ok(self.run_and_wait(DeviceDel { id: id.to_owned() }, filter, timeout).await?.1)
    }
}
