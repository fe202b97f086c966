//! `qmp events`: events as JSON lines as they arrive, as `virsh qemu-monitor-event --loop`.

use std::time::Duration;

use qmpkit::{ClientBuilder, EventFilter, EventItem};

use crate::common::{self, FAILED, Failure, OK, Style};

/// Arguments of `qmp events`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Events are printed one JSON object a line, as they arrive, until --count events,\n\
--timeout seconds or the end of the connection.\n\n\
Examples:\n  qmp events /run/vm1.qmp\n  qmp events ./qmp.sock --name STOP --name RESUME --count 2\n  \
qmp events localhost:4444 --timeout 60 | jq .event\n\n\
Exit status: 0 the count was reached, the time ran out or the peer closed after events; 2 the\n\
connection failed; 64 usage.")]
pub(crate) struct EventsArgs {
    /// The peer: a unix socket path or host:port.
    addr: Option<String>,
    /// Only events with this name (repeatable).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = common::parse_seconds)]
    timeout: Option<Duration>,
    /// Indented JSON.
    #[arg(short, long)]
    pretty: bool,
}

/// Runs `qmp events` and returns the exit status.
pub(crate) fn run(args: EventsArgs) -> i32 {
    common::finish("events", run_inner(args))
}

fn run_inner(args: EventsArgs) -> Result<i32, Failure> {
    // One event a line even on a terminal, unless asked: the output is a stream of records.
    let style = Style { pretty: args.pretty, ..Style::for_stdout(args.pretty) };
    common::runtime()?.block_on(async {
        let addr = common::address(args.addr);
        let client = common::connect_target(addr.as_deref(), ClientBuilder::new()).await?;
        let filter = if args.names.is_empty() { EventFilter::all() } else { EventFilter::names(&args.names) };
        let mut events = client.subscribe(filter);
        // Said for scripts and tests that need to know when nothing can be missed any more.
        tracing::debug!(target: "qmp", "subscribed; waiting for events");
        let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut seen = 0u64;
        while args.count.is_none_or(|n| seen < n) {
            let next = async {
                match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, events.next()).await.ok(),
                    None => Some(events.next().await),
                }
            };
            match next.await {
                // The time ran out.
                None => break,
                Some(Some(EventItem::Event(event))) => {
                    seen += 1;
                    common::out(&style.json(&event.to_value()));
                }
                Some(Some(EventItem::Lagged { missed })) => {
                    eprintln!("qmp events: {missed} events were dropped here (the output was too slow)");
                }
                Some(None) => {
                    let reason = events.end_reason().map_or_else(|| "closed".to_owned(), |r| r.to_string());
                    eprintln!("qmp events: {reason}");
                    return Ok(if args.count.is_some() { FAILED } else { OK });
                }
            }
        }
        client.close().await;
        Ok(OK)
    })
}
