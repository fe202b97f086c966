//! What `qmp bench server` and `qmp bench proxy` share: the raw blocking QMP client that
//! drives every server alike, the `/proc` readers that measure any process alike (this one, a
//! server of ours, QEMU, `qmp proxy`), and how a run is set up and reported.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;

/// The command every round trip sends.
pub(super) const REQUEST: &[u8] = b"{\"execute\":\"query-status\"}";

/// How the client waits for a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Wait {
    /// `poll` for readability, then `read`.
    Poll,
    /// A blocking `read`.
    Read,
}

/// A blocking QMP connection that reads CRLF-terminated messages.
pub(super) struct Raw {
    pub(super) stream: UnixStream,
    wait: Wait,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Raw {
    /// Connects and negotiates, with `oob` if asked; with `read_timeout`, a read that waits
    /// longer fails instead of hanging the benchmark.
    pub(super) fn connect(path: &Path, oob: bool, wait: Wait, read_timeout: Option<Duration>) -> anyhow::Result<Raw> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(read_timeout)?;
        let mut raw = Raw { stream, wait, buf: vec![0; 64 * 1024], start: 0, end: 0 };
        raw.message()?;
        let negotiate: &[u8] = if oob {
            b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}"
        } else {
            b"{\"execute\":\"qmp_capabilities\"}"
        };
        raw.stream.write_all(negotiate)?;
        let reply = raw.message()?;
        if !reply.starts_with(b"{\"return\": {}") {
            bail!("negotiation failed: {}", String::from_utf8_lossy(&reply));
        }
        Ok(raw)
    }

    /// Reads one message (up to CRLF).
    pub(super) fn message(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(at) = self.buf[self.start..self.end].windows(2).position(|w| w == b"\r\n") {
                let msg = self.buf[self.start..self.start + at].to_vec();
                self.start += at + 2;
                return Ok(msg);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            wait_readable(&self.stream, self.wait)?;
            let n = self.stream.read(&mut self.buf[self.end..])?;
            if n == 0 {
                bail!("EOF from the server");
            }
            self.end += n;
        }
    }

    /// `n` sequential `query-status` round trips, each checked, with their latencies.
    pub(super) fn round_trips(&mut self, n: usize) -> anyhow::Result<Vec<Duration>> {
        let mut latencies = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            self.stream.write_all(REQUEST)?;
            let reply = self.message()?;
            latencies.push(t.elapsed());
            if !reply.starts_with(b"{\"return\": {\"status\": \"running\"") {
                bail!("unexpected reply {}", String::from_utf8_lossy(&reply));
            }
        }
        Ok(latencies)
    }
}

/// With [`Wait::Poll`], waits until `stream` has something to read. A thread blocked in
/// `read` on a unix socket sleeps on the queue that is also woken each time the peer consumes
/// what this side sent; `poll` wakes only for what it asked for.
pub(super) fn wait_readable(stream: &UnixStream, wait: Wait) -> anyhow::Result<()> {
    if wait == Wait::Poll {
        let mut fds = [rustix::event::PollFd::new(stream, rustix::event::PollFlags::IN)];
        rustix::event::poll(&mut fds, None)?;
    }
    Ok(())
}

/// CPU time of every thread of a process, in nanoseconds.
pub(super) fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("process {pid}"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        total += stat.split_whitespace().next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total)
}

/// The context switches, voluntary and involuntary, of the threads listed in `tasks`
/// (`/proc/PID/task`).
pub(super) fn switches(tasks: &str) -> anyhow::Result<(u64, u64)> {
    let mut total = (0, 0);
    for task in std::fs::read_dir(tasks)? {
        let status = std::fs::read_to_string(task?.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            let count = |prefix: &str| line.strip_prefix(prefix).and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(v) = count("voluntary_ctxt_switches:") {
                total.0 += v;
            } else if let Some(v) = count("nonvoluntary_ctxt_switches:") {
                total.1 += v;
            }
        }
    }
    Ok(total)
}

/// The resident memory of a process (`VmRSS` in `/proc/PID/status`), in bytes.
pub(super) fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

/// The median of `values` (the mean of the middle two when their number is even); NaN when
/// there are none.
pub(super) fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => v[len / 2],
        len => (v[len / 2 - 1] + v[len / 2]) / 2.0,
    }
}

/// One scenario's row over its rounds: each figure named in `keys` is the median of the
/// rounds' (JSON objects), the other fields are the first round's.
pub(super) fn median_row(rounds: &[Value], keys: &[&str]) -> Value {
    let mut row = rounds.first().cloned().unwrap_or(Value::Null);
    for &key in keys {
        let figures: Vec<f64> = rounds.iter().filter_map(|r| r[key].as_f64()).collect();
        if !figures.is_empty() {
            row[key] = serde_json::json!(median(figures));
        }
    }
    row
}

/// The first cells of a round-trip table row, `| scenario | ops/s | p50 µs | p99 µs`, from a
/// row with `scenario`, `ops_per_s`, `p50_us` and `p99_us`; each bench adds its own columns.
pub(super) fn round_trip_cells(row: &Value) -> String {
    format!(
        "| {} | {:.0} | {:.1} | {:.1}",
        row["scenario"].as_str().unwrap_or_default(),
        row["ops_per_s"].as_f64().unwrap_or(0.0),
        row["p50_us"].as_f64().unwrap_or(0.0),
        row["p99_us"].as_f64().unwrap_or(0.0),
    )
}

/// Runs `measure` in a directory of its own under the system's temporary directory (named
/// after `bench` and this process), removes the directory whatever the outcome, then prints
/// the report: as JSON with `json`, else with `table`.
pub(super) fn run_and_report<R: Serialize>(
    bench: &str,
    json: bool,
    measure: impl FnOnce(&Path) -> anyhow::Result<R>,
    table: impl FnOnce(&R),
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("qmp-bench-{bench}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    report(json, &result?, table)
}

/// Prints a report: as JSON with `json`, else with `table`.
pub(super) fn report<R: Serialize>(json: bool, report: &R, table: impl FnOnce(&R)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        table(report);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn medians_take_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([10.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median([]).is_nan());
        let rounds = [
            json!({"scenario": "s", "ops": 1.0, "p50": 9.0, "note": "first"}),
            json!({"scenario": "s", "ops": 3.0, "p50": 1.0, "note": "second"}),
            json!({"scenario": "s", "ops": 2.0, "p50": 5.0, "note": "third"}),
        ];
        assert_eq!(
            median_row(&rounds, &["ops", "p50", "absent"]),
            json!({"scenario": "s", "ops": 2.0, "p50": 5.0, "note": "first"})
        );
        assert_eq!(median_row(&[], &["ops"]), Value::Null);
    }
}
