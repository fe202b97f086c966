//! Real QEMU transcripts replayed against the simulator, byte for byte: QEMU 7.2's against
//! the 7.2 profile and QEMU 10.0's against the 10.0 profile (10.0 is not installed here, so
//! this is how the 10.0 profile is checked against real 10.0 output). The simulator is given
//! the transcript's package string and started paused when QEMU ran with `-S`; event
//! timestamps are compared as `{..}`.

use qmpkit_proto::transcript::unescape;
use qmpkit_sim::Sim;
use qmpkit_tests::server_fixture::normalize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The transcripts whose every command the simulator implements with QEMU's exact output.
/// (`08_system_reset` has a firmware-made second `RESET`, `14_human_monitor_command` QEMU's
/// whole HMP help, `15_18_command_errors` commands the simulator lacks.)
const TRANSCRIPTS: &[&str] = &[
    "05_query_version",
    "06_query_status",
    "06b_query_status_pc",
    "07_stop_cont",
    "07b_stop_cont_none",
    "08b_system_reset_none",
    "09_system_powerdown_quit",
    "10_quit",
    "10b_sigterm",
    "13_query_kvm",
    "13b_query_kvm_pc_tcg",
    "24_id_types",
];

fn transcript(version: &str, name: &str) -> String {
    let path = format!("{}/../qmpkit-proto/tests/data/qemu-{version}/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `package` of the transcript's greeting.
fn package(script: &str) -> String {
    let greeting = script.lines().find(|l| l.starts_with("S: {\"QMP\"")).expect("a greeting");
    let start = greeting.find("\"package\": \"").expect("a package") + "\"package\": \"".len();
    greeting[start..].split('"').next().unwrap().to_owned()
}

async fn replay_all(version: &str) {
    for name in TRANSCRIPTS {
        let script = transcript(version, name);
        let paused = script.lines().any(|l| l.starts_with("# argv:") && l.contains(" -S "));
        let sim = Sim::builder().version(version).package(package(&script)).paused(paused).build().unwrap();
        replay(&sim, &format!("{version}/{name}"), &script).await;
    }
}

/// Sends each `C:` line and compares each `S:` line with what the simulator writes; a
/// transcript that ends with QEMU closing the connection must end so here too. Where the
/// transcript's QEMU got SIGTERM, the machine gets [`qmpkit_sim::Machine::host_signal`].
async fn replay(sim: &Sim, name: &str, script: &str) {
    let (read, mut write) = tokio::io::split(sim.connect_pair());
    let mut read = BufReader::new(read);
    for (n, line) in script.lines().enumerate() {
        if line.starts_with("# note: sent SIGTERM") {
            sim.machine().host_signal();
        } else if let Some(bytes) = line.strip_prefix("C: ") {
            write.write_all(&unescape(bytes)).await.unwrap();
        } else if let Some(expected) = line.strip_prefix("S: ") {
            let expected = String::from_utf8(unescape(expected)).unwrap();
            let mut got = String::new();
            read.read_line(&mut got).await.unwrap();
            assert_eq!(normalize(&got), normalize(&expected), "{name} line {}", n + 1);
        }
    }
    if script.contains("# <EOF: server closed the connection>") {
        let mut rest = String::new();
        assert_eq!(read.read_line(&mut rest).await.unwrap(), 0, "{name}: the connection ends, got {rest:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn qemu_7_2_transcripts() {
    replay_all("7.2").await;
}

#[tokio::test(start_paused = true)]
async fn qemu_10_0_transcripts() {
    replay_all("10.0").await;
}
