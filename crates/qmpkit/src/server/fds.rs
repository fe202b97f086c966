//! File descriptors clients pass with `SCM_RIGHTS`: the per-connection slot and named fds
//! (`getfd`/`closefd`), and the fd sets shared by every connection (`add-fd`/`remove-fd`/
//! `query-fdsets`), with QEMU's semantics and texts (`monitor/fds.c`).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

/// Locks a mutex, carrying on with the data when another thread panicked while holding it:
/// every structure guarded here stays consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one connection holds: QEMU's single slot for the last fd received (kept until a
/// command takes it, replaced when a later message brings another) and the named fds.
#[derive(Debug, Default)]
pub(crate) struct ConnectionFds {
    slot: Mutex<Option<OwnedFd>>,
    named: Mutex<HashMap<String, OwnedFd>>,
}

impl ConnectionFds {
    /// Stores the fds that came with one read. As QEMU's socket chardev does, the first
    /// replaces whatever the slot held and the others are closed at once.
    pub(crate) fn received(&self, fds: &mut Vec<OwnedFd>) {
        if fds.is_empty() {
            return;
        }
        let first = fds.remove(0);
        fds.clear();
        tracing::debug!(fd = first.as_raw_fd(), "file descriptor received");
        *lock(&self.slot) = Some(first);
    }

    /// Takes the fd in the slot, if any.
    pub(crate) fn take(&self) -> Option<OwnedFd> {
        lock(&self.slot).take()
    }

    /// Stores a named fd, closing any fd that had the name before.
    pub(crate) fn insert_named(&self, name: String, fd: OwnedFd) {
        lock(&self.named).insert(name, fd);
    }

    /// Removes a named fd and hands it over.
    pub(crate) fn take_named(&self, name: &str) -> Option<OwnedFd> {
        lock(&self.named).remove(name)
    }

    /// Duplicates a named fd, leaving it in place.
    pub(crate) fn dup_named(&self, name: &str) -> Option<std::io::Result<OwnedFd>> {
        lock(&self.named).get(name).map(OwnedFd::try_clone)
    }
}

/// One fd in a set.
#[derive(Debug)]
struct SetFd {
    fd: OwnedFd,
    opaque: Option<String>,
}

/// The fd sets shared by all connections of a server, as QEMU's `mon_fdsets`.
///
/// QEMU closes a removed fd only once no one uses a dup of it; this library hands out
/// duplicates ([`FdSets::dup`]), so `remove-fd` closes the set's own fd at once and
/// duplicates stay valid.
#[derive(Debug, Default, Clone)]
pub struct FdSets {
    sets: Arc<Mutex<BTreeMap<i64, Vec<SetFd>>>>,
}

impl FdSets {
    /// Adds `fd` to set `set` (the lowest free id when `None`) and returns the set id and the
    /// fd's number, as `add-fd` does.
    ///
    /// # Errors
    /// QEMU's text when `set` is negative.
    pub fn add(&self, set: Option<i64>, fd: OwnedFd, opaque: Option<String>) -> Result<(i64, i32), String> {
        let mut sets = lock(&self.sets);
        let id = match set {
            Some(id) if id < 0 => return Err("Parameter 'fdset-id' expects a non-negative value".into()),
            Some(id) => id,
            None => (0..).find(|id| !sets.contains_key(id)).unwrap_or(0),
        };
        let raw = fd.as_raw_fd();
        sets.entry(id).or_default().push(SetFd { fd, opaque });
        Ok((id, raw))
    }

    /// Removes one fd (or, with `fd` `None`, every fd) of set `set`, as `remove-fd` does.
    ///
    /// # Errors
    /// QEMU's text when there is no such set or fd.
    pub fn remove(&self, set: i64, fd: Option<i64>) -> Result<(), String> {
        let mut sets = lock(&self.sets);
        let not_found = || match fd {
            Some(fd) => format!("File descriptor named 'fdset-id:{set}, fd:{fd}' not found"),
            None => format!("File descriptor named 'fdset-id:{set}' not found"),
        };
        let Some(fds) = sets.get_mut(&set) else {
            return Err(not_found());
        };
        match fd {
            Some(fd) => {
                let before = fds.len();
                fds.retain(|f| i64::from(f.fd.as_raw_fd()) != fd);
                if fds.len() == before {
                    return Err(not_found());
                }
            }
            None => fds.clear(),
        }
        if fds.is_empty() {
            sets.remove(&set);
        }
        Ok(())
    }

    /// A duplicate of fd `fd` of set `set`, for a command that opens `/dev/fdset/N`.
    #[must_use]
    pub fn dup(&self, set: i64, fd: i32) -> Option<std::io::Result<OwnedFd>> {
        let sets = lock(&self.sets);
        sets.get(&set)?.iter().find(|f| f.fd.as_raw_fd() == fd).map(|f| f.fd.try_clone())
    }

    /// The `query-fdsets` reply: `[{"fdset-id": N, "fds": [{"fd": N, "opaque"?: S}]}]`, in
    /// QEMU's order: the sets by descending id (QEMU keeps them sorted and prepends each to
    /// its reply), each set's fds in the order they were added.
    #[must_use]
    pub fn query(&self) -> Value {
        let sets = lock(&self.sets);
        let list: Vec<Value> = sets
            .iter()
            .rev()
            .map(|(id, fds)| {
                let fds: Vec<Value> = fds
                    .iter()
                    .map(|f| match &f.opaque {
                        Some(opaque) => json!({"fd": f.fd.as_raw_fd(), "opaque": opaque}),
                        None => json!({"fd": f.fd.as_raw_fd()}),
                    })
                    .collect();
                json!({"fds": fds, "fdset-id": id})
            })
            .collect();
        Value::Array(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lists_sets_by_descending_id_and_fds_as_added() {
        let sets = FdSets::default();
        let fd = || OwnedFd::from(std::io::pipe().expect("a pipe").1);
        let (first, a) = sets.add(None, fd(), Some("a".into())).unwrap();
        let (second, b) = sets.add(None, fd(), None).unwrap();
        let (_, c) = sets.add(Some(first), fd(), None).unwrap();
        assert_eq!((first, second), (0, 1));
        assert_eq!(
            sets.query(),
            json!([
                {"fds": [{"fd": b}], "fdset-id": 1},
                {"fds": [{"fd": a, "opaque": "a"}, {"fd": c}], "fdset-id": 0},
            ])
        );
    }
}
