//! `qmp job`: run a command that starts a job, follow it with a progress bar from
//! `JOB_STATUS_CHANGE` and `query-jobs` until it concludes, then report its outcome.

use std::io::IsTerminal;
use std::time::Duration;

use qmpkit::{Client, ClientBuilder, EventFilter, EventItem};
use serde_json::{Map, Value, json};

use crate::common::{self, Failure, OK, REFUSED};
use crate::kv;

/// How often `query-jobs` is asked for progress while the bar is shown.
const POLL: Duration = Duration::from_millis(200);

/// Arguments of `qmp job`.
#[derive(Debug, clap::Args)]
#[command(after_help = "The job is found by the command's job-id argument (block jobs without one use device).\n\
The progress bar is drawn on a terminal only; the outcome is one line on stdout. Ctrl-C offers\n\
to cancel the job (job-cancel).\n\n\
Examples:\n  qmp job /run/vm1.qmp drive-backup job-id=b0 device=drive0 target=/backup.qcow2 sync=full\n  \
qmp job ./qmp.sock blockdev-create job-id=c0 options.driver=file options.filename=/tmp/d.img options.size=1048576\n\n\
Exit status: 0 the job concluded without error, 1 it failed or was cancelled (or the command was\n\
refused), 2 connection failure, 64 usage.")]
pub(crate) struct JobArgs {
    /// The words: an address (optional), the command and its `key=value` arguments.
    #[arg(value_name = "ARGS", required = true, num_args = 1.., help = "[ADDR] COMMAND [key=value ...]")]
    words: Vec<String>,
}

/// What the words asked for: an address, a command, its arguments and the job's id.
type Request = (Option<String>, String, Map<String, Value>, String);

/// Splits the words into a [`Request`].
fn parse(words: &[String]) -> Result<Request, String> {
    let (addr, rest) = match words.split_first() {
        Some((first, rest)) if common::is_address(first) => (Some(first.clone()), rest),
        _ => (None, words),
    };
    let (name, rest) = rest.split_first().ok_or("no command given (try blockdev-create job-id=ID ...)")?;
    let arguments = kv::parse_arguments(rest).map_err(|e| e.to_string())?;
    let id = arguments
        .get("job-id")
        .or_else(|| arguments.get("device"))
        .and_then(Value::as_str)
        .ok_or("give job-id=ID so that the job can be followed")?
        .to_owned();
    Ok((addr, name.clone(), arguments, id))
}

/// Runs `qmp job` and returns the exit status.
pub(crate) fn run(args: JobArgs) -> i32 {
    common::finish("job", run_inner(args))
}

fn run_inner(args: JobArgs) -> Result<i32, Failure> {
    let (addr, name, arguments, id) = parse(&args.words).map_err(Failure::Usage)?;
    common::runtime()?.block_on(async {
        let addr = common::address(addr);
        let client = common::connect_target(addr.as_deref(), ClientBuilder::new()).await?;
        // Subscribed before the command is sent, so no status change can be missed.
        let id_filter = id.clone();
        let mut events = client.subscribe(
            EventFilter::names(["JOB_STATUS_CHANGE"]).with_predicate(move |e| {
                e.data.as_ref().and_then(|d| d.get("id")).and_then(Value::as_str) == Some(id_filter.as_str())
            }),
        );
        let arguments = Value::Object(arguments);
        tracing::debug!(target: "qmp", execute = %name, %arguments, "->");
        let value = client.execute(&name, arguments).await?;
        tracing::debug!(target: "qmp", %value, "<- return");
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix} {wide_bar} {percent:>3}% {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(id.clone());
        let mut poll = tokio::time::interval(POLL);
        // Caught from here on, so that no Ctrl-C between two turns of the loop ends `qmp`.
        let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| Failure::Failed(format!("cannot catch Ctrl-C: {e}")))?;
        let mut aborted = false;
        let outcome = loop {
            tokio::select! {
                item = events.next() => match item {
                    Some(EventItem::Event(event)) => {
                        tracing::debug!(target: "qmp", event = %event.to_value(), "<-");
                        let status = event.data.as_ref().and_then(|d| d.get("status")).and_then(Value::as_str).unwrap_or("").to_owned();
                        bar.set_message(status.clone());
                        // A job aborts when it fails or is cancelled; its error says which.
                        aborted |= status == "aborting";
                        if status == "concluded" || status == "null" {
                            break conclude(&client, &id, &status, aborted).await;
                        }
                    }
                    Some(EventItem::Lagged { .. }) => {}
                    None => break Err(Failure::Failed(format!("the connection ended while job {id} ran"))),
                },
                _ = poll.tick() => progress(&client, &id, &bar).await,
                _ = interrupts.recv() => offer_cancel(&client, &id, &bar).await,
            }
        };
        bar.finish_and_clear();
        client.close().await;
        outcome.map(|(code, line)| {
            common::out(&line);
            code
        })
    })
}

/// Updates the bar from `query-jobs`.
async fn progress(client: &Client, id: &str, bar: &indicatif::ProgressBar) {
    if let Ok(Value::Array(jobs)) = client.execute("query-jobs", Value::Null).await
        && let Some(job) = jobs.iter().find(|j| j["id"] == id)
    {
        bar.set_length(job["total-progress"].as_u64().unwrap_or(0).max(1));
        bar.set_position(job["current-progress"].as_u64().unwrap_or(0));
    }
}

/// Asks whether to cancel the job; on a yes, sends `job-cancel`.
async fn offer_cancel(client: &Client, id: &str, bar: &indicatif::ProgressBar) {
    let question = format!("cancel job {id}? [y/N] ");
    let yes = if std::io::stdin().is_terminal() {
        let answer = bar
            .suspend(|| {
                eprint!("{question}");
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .unwrap_or_default();
        answer.trim().eq_ignore_ascii_case("y") || answer.trim().eq_ignore_ascii_case("yes")
    } else {
        // Nobody can answer: an interrupt from a script means stop the job.
        true
    };
    if yes && let Err(err) = client.execute("job-cancel", json!({"id": id})).await {
        bar.suspend(|| Failure::from(err).print("job"));
    }
}

/// The job concluded (or vanished, when dismissed automatically): the exit status and the
/// line that says how, from its error in `query-jobs` when it is still there.
async fn conclude(client: &Client, id: &str, status: &str, aborted: bool) -> Result<(i32, String), Failure> {
    let jobs = client.execute("query-jobs", Value::Null).await?;
    let job = jobs.as_array().and_then(|jobs| jobs.iter().find(|j| j["id"] == id)).cloned();
    let error = job.as_ref().and_then(|j| j.get("error")).and_then(Value::as_str);
    Ok(match error {
        Some(error) => (REFUSED, format!("job {id} failed: {error}")),
        None if aborted => (REFUSED, format!("job {id} was cancelled")),
        None if job.is_none() && status == "null" => {
            (OK, format!("job {id} ended (dismissed before its outcome could be read)"))
        }
        None => (OK, format!("job {id} completed")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_is_needed() {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (addr, name, arguments, id) =
            parse(&words(&["./s", "blockdev-create", "job-id=c0", "options.size=1"])).unwrap();
        assert_eq!((addr.as_deref(), name.as_str(), id.as_str()), (Some("./s"), "blockdev-create", "c0"));
        assert_eq!(Value::Object(arguments), json!({"job-id": "c0", "options": {"size": 1}}));
        assert_eq!(parse(&words(&["block-stream", "device=d0"])).unwrap().3, "d0");
        assert_eq!(parse(&words(&["block-stream"])).unwrap_err(), "give job-id=ID so that the job can be followed");
        assert_eq!(parse(&words(&["./s"])).unwrap_err(), "no command given (try blockdev-create job-id=ID ...)");
    }
}
