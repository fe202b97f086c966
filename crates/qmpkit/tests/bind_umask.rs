//! `Listener::bind` under a permissive umask never shows a socket, or the directory it is
//! staged in, with more permissions than asked for.
//!
//! This is a test binary of its own because the umask belongs to the whole process: changed
//! inside the library's unit tests, it would loosen every file the tests beside it create.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use qmpkit::transport::{Endpoint, Listener};

/// A watcher lists the directory over and over while sockets are bound in it. Each socket
/// stays until the watcher has finished a whole listing begun after the bind, so the watcher
/// sees every one of them however the threads are scheduled; whether it also catches a
/// staging directory mid-bind is luck, and anything it catches is checked too.
#[test]
fn bind_never_exposes_looser_permissions() {
    const SOCKETS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let old = rustix::process::umask(rustix::fs::Mode::empty());
    let done = Arc::new(AtomicBool::new(false));
    let scans = Arc::new(AtomicUsize::new(0));
    let watcher = std::thread::spawn({
        let (dir, done, scans) = (dir.path().to_owned(), done.clone(), scans.clone());
        move || {
            let mut seen = 0;
            while !done.load(Ordering::Acquire) {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
                    let mode = meta.permissions().mode() & 0o777;
                    if meta.file_type().is_socket() {
                        assert_eq!(mode & !0o600, 0, "{:?} exposed with {mode:o}", entry.path());
                        seen += 1;
                    } else if meta.is_dir() {
                        assert_eq!(mode, 0o700, "{:?} exposed with {mode:o}", entry.path());
                    }
                }
                scans.fetch_add(1, Ordering::Release);
            }
            seen
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for i in 0..SOCKETS {
        let path = dir.path().join(format!("s{i}"));
        let listener = runtime.block_on(Listener::bind(&Endpoint::Unix(path.clone()), 0o600)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Two more finished listings: the second one began after the bind returned.
        let target = scans.load(Ordering::Acquire) + 2;
        while scans.load(Ordering::Acquire) < target {
            assert!(!watcher.is_finished(), "the watcher stopped: it found an exposed file");
            std::thread::yield_now();
        }
        runtime.block_on(async { drop(listener) });
    }
    rustix::process::umask(old);
    done.store(true, Ordering::Release);
    let seen = watcher.join().expect("no file was exposed with looser permissions");
    assert!(seen >= SOCKETS, "the watcher saw {seen} sockets");
    // Nothing is left behind: no staging directories.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
