//! A simulated QEMU monitor, built on the `qmpkit::server` library.
//!
//! This crate will hold the simulator that `qmp` talks to when no socket is given: a canned
//! schema and version, a VM state machine (`stop`, `cont`, `query-status`, `system_reset`, ...)
//! with the events real QEMU raises, and fault injection for testing clients (delays, dropped
//! replies, id-less errors, malformed output, a connection cut mid-message). It is empty until
//! the CLI's issue builds it; the workspace already compiles and tests it.
