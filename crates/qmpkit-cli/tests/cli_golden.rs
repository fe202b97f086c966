//! Every `qmp` subcommand against real QEMU: exact output and exit status, with only QEMU's
//! version and event timestamps normalised.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Output, Stdio};

use common::{exec_ok, qemu_with_second_monitor, qmp};
use qmpkit::launch::Instance;

mod common;

fn run(args: &[&str]) -> Output {
    qmp().args(args).output().expect("run qmp")
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child =
        qmp().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Output with QEMU's version and event timestamps replaced by fixed text.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = match (line.find("\"timestamp\":{"), line.find("},\"event\"")) {
            (Some(start), Some(end)) => format!("{}\"timestamp\":TS{}", &line[..start], &line[end + 1..]),
            _ => line.to_owned(),
        };
        let line = match line.strip_prefix("version  ") {
            Some(_) => "version  VERSION".to_owned(),
            None => line,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn addr(instance: &Instance) -> String {
    qmpkit_tests::socket(instance)
}

#[test]
fn exec_output_and_statuses() {
    let vm = qmpkit_tests::qemu_none();
    let a = addr(&vm);

    let out = run(&["exec", &a, "query-status"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str(), text(&out.stderr).as_str()),
        (Some(0), "{\"status\":\"running\",\"singlestep\":false,\"running\":true}\n", "")
    );
    let out = run(&["exec", &a, "query-status", "--pretty"]);
    assert_eq!(text(&out.stdout), "{\n  \"status\": \"running\",\n  \"singlestep\": false,\n  \"running\": true\n}\n");

    let out = run(&["exec", &a, "blockdev-add", "node-name=n0", "--args", r#"{"driver": "null-co", "size": 4096}"#]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "{}\n"), "{}", text(&out.stderr));
    let out = run(&["exec", &a, "query-named-block-nodes", "flat=true"]);
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((nodes[0]["node-name"].as_str(), nodes[0]["image"]["virtual-size"].as_i64()), (Some("n0"), Some(4096)));

    let out = run(&["exec", &a, "blockdev-add", "driver=nope"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str(), text(&out.stderr).as_str()),
        (Some(1), "", "GenericError: Parameter 'driver' does not accept value 'nope'\n")
    );
    let out = run(&["exec", &a, "no-such-command"]);
    assert_eq!(
        (out.status.code(), text(&out.stderr).as_str()),
        (Some(1), "CommandNotFound: The command no-such-command has not been found\n")
    );

    // A file descriptor passed with getfd, then used by name.
    let file = vm.dir().join("passed.txt");
    std::fs::write(&file, b"").unwrap();
    let out = run(&["exec", &a, "getfd", "fdname=passed", "--fd", file.to_str().unwrap()]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "{}\n"), "{}", text(&out.stderr));
    let out = run(&["exec", &a, "closefd", "fdname=passed"]);
    assert_eq!(out.status.code(), Some(0), "the fd arrived under its name: {}", text(&out.stderr));

    // OOB: QEMU 7.2 offers it; exec-oob needs a command allowed out-of-band.
    let out = run(&["exec", &a, "--oob", "migrate-pause"]);
    assert_eq!(
        (out.status.code(), text(&out.stderr).as_str()),
        (Some(1), "GenericError: migrate-pause is currently only supported during postcopy-active state\n")
    );

    // The address from the environment.
    let out = qmp().args(["exec", "query-kvm"]).env("QMP_SOCKET", &a).output().unwrap();
    assert_eq!(text(&out.stdout), "{\"enabled\":false,\"present\":true}\n");
}

#[test]
fn usage_and_connection_failures() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["exec", "./nowhere.sock", "query-status", "a"], 64, "qmp exec: expected key=value, got \"a\"\n"),
        (&["exec", "./nowhere.sock", "x", "--args", "[]"], 64, "qmp exec: --args takes a JSON object\n"),
        (&["exec", "./nowhere.sock", "x", "--timeout", "soon"], 64, ""),
        (&["job", "./nowhere.sock", "block-stream"], 64, "qmp job: give job-id=ID so that the job can be followed\n"),
        (&["frobnicate"], 64, ""),
    ];
    for (args, code, stderr) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", text(&out.stderr));
        if !stderr.is_empty() {
            assert_eq!(text(&out.stderr), *stderr, "{args:?}");
        }
        assert!(out.stdout.is_empty());
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock").display().to_string();
    for sub in ["exec", "info", "events", "shell"] {
        let args: Vec<&str> = if sub == "exec" { vec![sub, &missing, "query-status"] } else { vec![sub, &missing] };
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{sub}");
        assert_eq!(
            text(&out.stderr),
            format!("qmp {sub}: cannot connect to {missing}: No such file or directory (os error 2)\n")
        );
    }
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    for sub in ["shell", "exec", "events", "info", "wrap", "job", "agent", "completions"] {
        let out = run(&[sub, "--help"]);
        assert!(text(&out.stdout).contains("Examples:"), "{sub} --help shows examples");
    }
}

/// Without an address, every subcommand talks to the simulator inside `qmp` and says so.
#[test]
fn the_built_in_simulator_without_an_address() {
    const SAID: &str = "qmp: no address given; talking to the built-in simulator\n";
    let out = run(&["exec", "query-status"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str(), text(&out.stderr).as_str()),
        (Some(0), "{\"status\":\"running\",\"running\":true}\n", SAID)
    );
    let out = run(&["exec", "query-status", "x=1"]);
    assert_eq!(
        (out.status.code(), text(&out.stderr).as_str()),
        (Some(1), format!("{SAID}GenericError: Parameter 'x' is unexpected\n").as_str())
    );

    let out = run(&["info"]);
    assert_eq!(out.status.code(), Some(0));
    let table = normalise(&text(&out.stdout));
    let thread = format!("thread {}", table.split("thread ").nth(1).unwrap().split(' ').next().unwrap());
    assert_eq!(
        table.replace(&thread, "thread N"),
        "version  VERSION\nname     qmp-sim\nuuid     00000000-0000-0000-0000-000000000000\nstatus   running\n\
         kvm      present, disabled\nballoon  134217728 bytes\ncpus     #0 /machine/unattached/device[0] thread N (x86_64)\n\
         block    drive0: json:{\"driver\": \"null-co\", \"size\": \"1073741824\"} (null-co)\n\
         \x20        drive1: json:{\"driver\": \"null-co\", \"size\": \"2147483648\"} (null-co)\njobs     none\n"
    );

    // One simulated machine per process: the shell's commands and its events.
    let out = run_with_stdin(&["shell"], "query-name\nstop\nquery-status\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        normalise(&text(&out.stdout)),
        "{\"return\":{\"name\":\"qmp-sim\"}}\n{\"timestamp\":TS,\"event\":\"STOP\"}\n{\"return\":{}}\n\
         {\"return\":{\"status\":\"paused\",\"running\":false}}\n"
    );

    let out = run(&["job", "blockdev-backup", "job-id=b0", "device=node0", "target=node1", "sync=full"]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "job b0 completed\n"));
    let out = run(&["job", "blockdev-backup", "job-id=b1", "device=node0", "target=nowhere", "sync=full"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with(SAID) && text(&out.stderr).lines().count() == 2, "{}", text(&out.stderr));

    let out = run(&["events", "--timeout", "0.05"]);
    assert_eq!((out.status.code(), text(&out.stderr).as_str(), out.stdout.len()), (Some(0), SAID, 0));
}

#[test]
fn info_as_a_table_and_as_json() {
    let vm = qmpkit_tests::qemu_none();
    let out = run(&["info", &addr(&vm)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        normalise(&text(&out.stdout)),
        "version  VERSION\nname     -\nuuid     00000000-0000-0000-0000-000000000000\nstatus   running\n\
         kvm      present, disabled\nballoon  unsupported (DeviceNotActive: No balloon device has been activated)\n\
         cpus     none\nblock    none\njobs     none\n"
    );
    let out = run(&["info", &addr(&vm), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["balloon"]["error"]["class"], "DeviceNotActive");
    assert_eq!(info["status"]["status"], "running");
    assert_eq!(info["version"]["qemu"]["major"], 7);
}

/// Starts `qmp -v events ARGS...` and returns once it has said (on stderr, read up to there)
/// that it is subscribed, so that what the test does next cannot come before it listens.
fn events_subscribed(args: &[&str]) -> (Child, BufReader<ChildStderr>) {
    let mut child =
        qmp().args(["-v", "events"]).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("subscribed") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "qmp events ended before subscribing");
    }
    (child, stderr)
}

#[test]
fn events_as_lines_until_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let (vm, second) = qemu_with_second_monitor(dir.path());
    let (child, _stderr) = events_subscribed(&[&addr(&vm), "--name", "STOP", "--name", "RESUME", "--count", "2"]);
    for command in ["stop", "query-status", "cont"] {
        exec_ok(&second, &[command]);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        normalise(&text(&out.stdout)),
        "{\"timestamp\":TS,\"event\":\"STOP\"}\n{\"timestamp\":TS,\"event\":\"RESUME\"}\n"
    );

    let out = run(&["events", &addr(&vm), "--timeout", "0.1"]);
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0), "the time runs out quietly");

    // QEMU exits before the count: the events it sent, then status 2.
    let (mut child, mut stderr) = events_subscribed(&[&addr(&vm), "--count", "5"]);
    exec_ok(&second, &["quit"]);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(2), "{rest}");
    assert!(normalise(&stdout).starts_with("{\"timestamp\":TS,\"event\":\"SHUTDOWN\""), "{stdout}");
    assert!(rest.contains("qmp events: the server went away"), "{rest}");
    drop(vm);
}

#[test]
fn shell_with_stdin_not_a_terminal() {
    let vm = qmpkit_tests::qemu_none();
    let a = addr(&vm);
    let script = "query-status\n\n{\"execute\": \"query-kvm\", \"id\": \"mine\"}\ntransaction(\nabort\n)\nquery-name\n";
    let out = run_with_stdin(&["shell", &a], script);
    assert_eq!(
        text(&out.stdout),
        "{\"return\":{\"status\":\"running\",\"singlestep\":false,\"running\":true}}\n\
         {\"return\":{\"enabled\":false,\"present\":true},\"id\":\"mine\"}\n\
         {\"error\":{\"class\":\"GenericError\",\"desc\":\"Transaction aborted using Abort action\"}}\n"
    );
    assert_eq!(out.status.code(), Some(1), "the transaction failed and the shell stopped there");

    // --keep-going runs every line; arguments are checked before sending.
    let log = vm.dir().join("log.jsonl");
    let script = "blockdev-add driver=nope\nstop now\nquery-name\n";
    let out = run_with_stdin(&["shell", "--keep-going", "-l", log.to_str().unwrap(), &a], script);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "{\"return\":{}}\n");
    assert_eq!(
        text(&out.stderr),
        "GenericError: Parameter 'driver' does not accept value 'nope' (not sent)\nexpected key=value, got \"now\"\n"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "{\"execute\":\"query-name\",\"return\":{}}\n");

    // -v echoes what is sent; -p pretty-prints; all good is status 0.
    let out = run_with_stdin(&["-v", "shell", "-p", &a], "query-name\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "{\n  \"execute\": \"query-name\"\n}\n{\n  \"return\": {}\n}\n");

    // -N leaves the negotiation to the user, as with qemu-ga or a debugging session.
    let out = run_with_stdin(&["shell", "-N", "--keep-going", &a], "query-name\nqmp_capabilities\nquery-name\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\n\
         {\"return\":{}}\n{\"return\":{}}\n"
    );

    // Raw JSON goes as typed: QEMU itself judges members it does not know.
    let out = run_with_stdin(&["shell", &a], "{\"execute\": \"query-name\", \"foo\": 1, \"id\": 5}\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "{\"id\":5,\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member 'foo' is unexpected\"}}\n"
    );

    // HMP mode.
    let out = run_with_stdin(&["shell", "-H", &a], "info status\n");
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "VM status: running\r\n"));
}

#[test]
fn job_follows_to_the_outcome() {
    let vm = qmpkit_tests::qemu_none();
    let a = addr(&vm);
    let image = vm.dir().join("disk.img");
    let filename = format!("options.filename={}", image.display());
    let out =
        run(&["job", &a, "blockdev-create", "job-id=c0", "options.driver=file", &filename, "options.size=1048576"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(0), "job c0 completed\n"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 1_048_576);

    let out = run(&[
        "job",
        &a,
        "blockdev-create",
        "job-id=c1",
        "options.driver=file",
        "options.filename=/nonexistent-dir/x.img",
        "options.size=0",
    ]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(1), "job c1 failed: Could not create '/nonexistent-dir/x.img': No such file or directory\n")
    );
    let out = run(&["job", &a, "blockdev-create", "job-id=c2", "options.driver=nope", "options.size=0"]);
    assert_eq!(
        (out.status.code(), text(&out.stderr).as_str()),
        (Some(1), "GenericError: Parameter 'driver' does not accept value 'nope'\n")
    );
}

#[test]
fn wrap_starts_qemu_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = qmp()
        .args(["wrap", "--", "-machine", "none", "-name", "wrapped"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"query-name\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(0), "{\"return\":{\"name\":\"wrapped\"}}\n"),
        "{}",
        text(&out.stderr)
    );
    let left: Vec<PathBuf> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "wrap removed its files: {left:?}");
}

#[test]
fn completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0));
        let script = text(&out.stdout);
        assert!(script.contains("qmp") && script.contains("shell") && script.contains("keep-going"), "{shell}");
    }
}
