//! The simulated machine on the wire: run-state sequences with their events in QEMU's order
//! relative to the reply (the order of the QEMU 7.2 transcripts 07 to 10), error texts, and
//! the guest-side happenings. Each test reads the server's exact lines over an in-memory pipe
//! (`Sim::connect_pair`), with paused time so that the guest's delayed reactions run at once.

use qmpkit_sim::{RunState, Sim, SimBuilder};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};

/// One raw connection: sends lines, receives messages with event timestamps checked and
/// removed.
struct Wire {
    read: BufReader<ReadHalf<DuplexStream>>,
    write: WriteHalf<DuplexStream>,
}

impl Wire {
    async fn open(sim: &Sim) -> (Wire, Value) {
        let (read, write) = tokio::io::split(sim.connect_pair());
        let mut wire = Wire { read: BufReader::new(read), write };
        let greeting = wire.recv().await.expect("a greeting");
        wire.send(r#"{"execute": "qmp_capabilities"}"#).await;
        assert_eq!(wire.recv().await, Some(json!({"return": {}})));
        (wire, greeting)
    }

    async fn send(&mut self, line: &str) {
        self.write.write_all(line.as_bytes()).await.unwrap();
        self.write.write_all(b"\n").await.unwrap();
    }

    /// The next message, or `None` at EOF. Lines must end in CRLF as QEMU's.
    async fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        if self.read.read_line(&mut line).await.unwrap() == 0 {
            return None;
        }
        let line = line.strip_suffix("\r\n").expect("QEMU ends lines with CRLF");
        let mut value: Value = serde_json::from_str(line).unwrap();
        if let Some(map) = value.as_object_mut() {
            if let Some(ts) = map.shift_remove("timestamp") {
                assert!(ts["seconds"].as_u64().unwrap() > 1_600_000_000, "a real timestamp: {ts}");
                assert!(ts["microseconds"].as_u64().unwrap() < 1_000_000);
            }
        }
        Some(value)
    }

    /// Sends `line` and returns every message up to and including the reply.
    async fn exchange(&mut self, line: &str) -> Vec<Value> {
        self.send(line).await;
        let mut out = Vec::new();
        loop {
            let message = self.recv().await.expect("a reply before EOF");
            let done = message.get("return").is_some() || message.get("error").is_some();
            out.push(message);
            if done {
                return out;
            }
        }
    }

    async fn ok(&mut self, command: &str) -> Vec<Value> {
        let out = self.exchange(&format!(r#"{{"execute": "{command}"}}"#)).await;
        assert_eq!(out.last(), Some(&json!({"return": {}})), "{command}: {out:?}");
        out[..out.len() - 1].to_vec()
    }

    async fn status(&mut self) -> Value {
        self.exchange(r#"{"execute": "query-status"}"#).await.pop().unwrap()["return"].clone()
    }
}

fn event(name: &str) -> Value {
    json!({"event": name})
}

fn event_with(name: &str, data: Value) -> Value {
    json!({"event": name, "data": data})
}

fn sim(builder: SimBuilder) -> Sim {
    builder.build().expect("the simulator builds")
}

#[tokio::test(start_paused = true)]
async fn prelaunch_cont_stop_as_qemu_7_2() {
    let sim = sim(Sim::builder().version("7.2").paused(true));
    let (mut wire, greeting) = Wire::open(&sim).await;
    assert_eq!(greeting["QMP"]["version"]["qemu"], json!({"micro": 22, "minor": 2, "major": 7}));
    assert_eq!(wire.status().await, json!({"status": "prelaunch", "singlestep": false, "running": false}));
    // `stop` before the first `cont` changes nothing and says nothing, as QEMU with -S.
    assert_eq!(wire.ok("stop").await, Vec::<Value>::new());
    assert_eq!(wire.ok("cont").await, vec![event("RESUME")]);
    assert_eq!(wire.status().await, json!({"status": "running", "singlestep": false, "running": true}));
    assert_eq!(wire.ok("cont").await, Vec::<Value>::new());
    assert_eq!(wire.ok("stop").await, vec![event("STOP")]);
    assert_eq!(wire.ok("stop").await, Vec::<Value>::new());
    assert_eq!(wire.status().await, json!({"status": "paused", "singlestep": false, "running": false}));
    assert_eq!(sim.machine().run_state(), RunState::Paused);
}

#[tokio::test(start_paused = true)]
async fn query_status_of_10_0_has_no_singlestep() {
    let sim = sim(Sim::builder());
    let (mut wire, greeting) = Wire::open(&sim).await;
    assert_eq!(greeting["QMP"]["version"]["qemu"], json!({"micro": 2, "minor": 0, "major": 10}));
    assert_eq!(wire.status().await, json!({"status": "running", "running": true}));
}

#[tokio::test(start_paused = true)]
async fn system_reset_while_running_and_paused() {
    let sim = sim(Sim::builder().version("7.2.22"));
    let (mut wire, _) = Wire::open(&sim).await;
    let reset = event_with("RESET", json!({"guest": false, "reason": "host-qmp-system-reset"}));
    assert_eq!(wire.ok("system_reset").await, vec![reset.clone()]);
    assert_eq!(wire.status().await["status"], "running");
    assert_eq!(wire.ok("stop").await, vec![event("STOP")]);
    assert_eq!(wire.ok("system_reset").await, vec![reset]);
    // QEMU's main loop puts a machine that is not running back into prelaunch after a reset.
    assert_eq!(wire.status().await["status"], "prelaunch");
}

#[tokio::test(start_paused = true)]
async fn powerdown_without_guest_os_then_quit_closes() {
    let sim = sim(Sim::builder());
    let (mut wire, _) = Wire::open(&sim).await;
    assert_eq!(wire.ok("system_powerdown").await, vec![event("POWERDOWN")]);
    assert_eq!(wire.status().await["status"], "running");
    let out = wire.exchange(r#"{"execute": "quit", "id": "bye"}"#).await;
    assert_eq!(
        out,
        vec![
            event_with("SHUTDOWN", json!({"guest": false, "reason": "host-qmp-quit"})),
            json!({"return": {}, "id": "bye"})
        ]
    );
    assert_eq!(wire.recv().await, None, "the connection closes after quit");
    assert!(sim.machine().has_exited());
}

#[tokio::test(start_paused = true)]
async fn suspend_and_wakeup() {
    let sim = sim(Sim::builder());
    let (mut wire, _) = Wire::open(&sim).await;
    let out = wire.exchange(r#"{"execute": "system_wakeup", "id": 1}"#).await;
    assert_eq!(
        out,
        vec![
            json!({"id": 1, "error": {"class": "GenericError", "desc": "Unable to wake up: guest is not in suspended state"}})
        ]
    );
    sim.machine().guest_suspend();
    assert_eq!(wire.recv().await, Some(event("SUSPEND")));
    assert_eq!(wire.status().await, json!({"status": "suspended", "running": false}));
    // `cont` leaves a suspended guest alone, as QEMU's.
    assert_eq!(wire.ok("cont").await, Vec::<Value>::new());
    assert_eq!(wire.ok("system_wakeup").await, vec![event("WAKEUP")]);
    assert_eq!(wire.status().await["status"], "running");
}

#[tokio::test(start_paused = true)]
async fn guest_shutdown_with_no_shutdown_needs_a_reset() {
    let sim = sim(Sim::builder().no_shutdown(true));
    let (mut wire, _) = Wire::open(&sim).await;
    sim.machine().guest_shutdown();
    assert_eq!(wire.recv().await, Some(event_with("SHUTDOWN", json!({"guest": true, "reason": "guest-shutdown"}))));
    assert_eq!(wire.recv().await, Some(event("STOP")));
    assert_eq!(wire.status().await["status"], "shutdown");
    let out = wire.exchange(r#"{"execute": "cont"}"#).await;
    assert_eq!(
        out,
        vec![json!({"error": {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"}})]
    );
    wire.ok("system_reset").await;
    assert_eq!(wire.status().await["status"], "prelaunch");
    assert_eq!(wire.ok("cont").await, vec![event("RESUME")]);
}

#[tokio::test(start_paused = true)]
async fn guest_shutdown_without_no_shutdown_ends_the_machine() {
    let sim = sim(Sim::builder());
    let (mut wire, _) = Wire::open(&sim).await;
    sim.machine().guest_shutdown();
    assert_eq!(wire.recv().await, Some(event_with("SHUTDOWN", json!({"guest": true, "reason": "guest-shutdown"}))));
    assert_eq!(wire.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn guest_panic_pauses_with_no_shutdown() {
    let sim = sim(Sim::builder().no_shutdown(true));
    let (mut wire, _) = Wire::open(&sim).await;
    sim.machine().guest_panic();
    assert_eq!(wire.recv().await, Some(event_with("GUEST_PANICKED", json!({"action": "pause"}))));
    assert_eq!(wire.recv().await, Some(event("STOP")));
    assert_eq!(wire.status().await["status"], "guest-panicked");
    // A panicked guest may be continued (QEMU does not require a reset for it).
    assert_eq!(wire.ok("cont").await, vec![event("RESUME")]);
}

#[tokio::test(start_paused = true)]
async fn hmp_subset() {
    let sim = sim(Sim::builder().version("7.2").paused(true).name("vm1"));
    let (mut wire, _) = Wire::open(&sim).await;
    let mut hmp = async |line: &str| {
        let cmd = json!({"execute": "human-monitor-command", "arguments": {"command-line": line}});
        wire.exchange(&cmd.to_string()).await.pop().unwrap()["return"].as_str().unwrap().to_owned()
    };
    assert_eq!(hmp("info status").await, "VM status: paused (prelaunch)\r\n");
    assert_eq!(hmp("info version").await, "7.2.22qmpkit-sim\r\n");
    assert_eq!(hmp("info kvm").await, "kvm support: disabled\r\n");
    assert_eq!(hmp("info name").await, "vm1\r\n");
    assert_eq!(hmp("info uuid").await, "00000000-0000-0000-0000-000000000000\r\n");
    assert_eq!(hmp("nosuchhmp").await, "unknown command: 'nosuchhmp'\r\n");
    assert_eq!(hmp("info nosuch").await, "unknown command: 'info nosuch'\r\n");
    assert_eq!(hmp("").await, "");
    assert_eq!(hmp("help quit").await, "quit|q  -- quit the emulator\r\n");
    assert!(hmp("help").await.contains("stop|s  -- stop emulation\r\n"));
    assert_eq!(hmp("cont").await, "");
    assert_eq!(hmp("info status").await, "VM status: running\r\n");
}
