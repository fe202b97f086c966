//! `qmp proxy` as a program: a TOML policy making one listener read-only, and the JSON-lines
//! exchange log, against a real QEMU.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use qmpkit::Client;
use serde_json::Value;

/// The proxy process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn read_only_listener_from_a_policy_file_and_the_exchange_log() {
    let qemu = qmpkit_tests::qemu_none_async().await;
    let dir = tempfile::tempdir().unwrap();
    let (rw, ro, log) = (dir.path().join("rw.sock"), dir.path().join("ro.sock"), dir.path().join("log.jsonl"));
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, format!("[[listener]]\naddress = {:?}\nallow = [\"query-*\"]\n", ro.display().to_string()))
        .unwrap();
    let _proxy = Running(
        Command::new(env!("CARGO_BIN_EXE_qmp"))
            .arg("proxy")
            .arg("--upstream")
            .arg(qemu.qmp_socket())
            .arg("--listen")
            .arg(&rw)
            .arg("--listen")
            .arg(&ro)
            .arg("--policy")
            .arg(&policy)
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("run qmp proxy"),
    );
    // The listeners exist once bound; a client is served once the proxy has reached QEMU.
    let ready = |path: &std::path::Path| {
        Client::builder().connect_until_ready(path.display().to_string(), Duration::from_secs(30))
    };
    let ro_client = ready(&ro).await.unwrap();
    let rw_client = ready(&rw).await.unwrap();

    assert!(ro_client.execute("query-status", ()).await.is_ok());
    let err = ro_client.execute("stop", ()).await.unwrap_err();
    assert_eq!(err.qmp_error().unwrap().desc, "The command stop has not been found");
    rw_client.execute("stop", ()).await.unwrap();
    assert_eq!(ro_client.query_status().await.unwrap().status, qmpkit::types::RunState::Paused);

    // Every line of the log is JSON naming the client and listener of each exchange; the log
    // is written line by line, so what was exchanged above is in it.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let refused = lines
        .iter()
        .find(|l| l["dir"] == "out" && l["message"]["error"]["desc"] == "The command stop has not been found")
        .expect("the refusal is logged");
    assert_eq!(refused["listener"], ro.display().to_string());
    let stop = lines
        .iter()
        .find(|l| l["dir"] == "in" && l["message"]["execute"] == "stop" && l["listener"] == rw.display().to_string());
    assert!(stop.is_some(), "{text}");
    assert_ne!(stop.unwrap()["client"], refused["client"]);
}
