//! `qmp sim`: serve simulated QEMU monitors (`qmpkit-sim`) until `quit` or a signal.

use std::net::IpAddr;

use anyhow::{Context, bail};
use qmpkit::server::ClientPolicy;
use qmpkit::transport::Endpoint;
use qmpkit_sim::{RunningSim, Sim};

/// Serve simulated QEMU monitors, for testing QMP clients without a virtual machine.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to listen: a unix socket path or `host:port` on a loopback address (repeatable).
    /// With `--vms`, one directory that receives `vm-0001.sock`, `vm-0002.sock`, ...
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<String>,
    /// Start paused in `prelaunch`, as QEMU's `-S`.
    #[arg(long)]
    paused: bool,
    /// The machine's name (`-name`); with `--vms`, suffixed with `-0001`, `-0002`, ...
    #[arg(long)]
    name: Option<String>,
    /// The QEMU version to imitate: 7.2 or 10.0 (a micro version may follow).
    #[arg(long = "version", value_name = "X.Y.Z", default_value = "10.0")]
    qemu_version: String,
    /// Serve this many independent machines from one process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    vms: u32,
    /// Offer the downstream commands that trigger guest-side happenings (`__org.qmpkit_*`).
    #[arg(long)]
    faults: bool,
    /// Keep a machine whose guest shut down or panicked, stopped, as QEMU's `-no-shutdown`.
    #[arg(long)]
    no_shutdown: bool,
    /// Give the machines a guest that powers off on `system_powerdown`, as a guest OS does.
    #[arg(long)]
    acpi_guest: bool,
    /// Serve every client of a monitor at once; by default one at a time, as QEMU (a second
    /// client waits, hearing nothing, until the first leaves).
    #[arg(long)]
    many_clients: bool,
    /// Print the addresses as JSON, one object per line.
    #[arg(long)]
    json: bool,
}

/// One machine to start: where and under which name.
struct Plan {
    endpoints: Vec<Endpoint>,
    name: Option<String>,
    uuid: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    qmpkit_sim::Profile::for_version(&args.qemu_version)?;
    let plans = plan(&args)?;
    // One thread, as the server library's benchmark server: the simulated machines do little
    // work each, and a second thread would only add cross-thread wake-ups to every request.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(&args, plans))
}

fn plan(args: &Args) -> anyhow::Result<Vec<Plan>> {
    let mut endpoints = Vec::new();
    for text in &args.listen {
        let endpoint: Endpoint = text.parse().with_context(|| format!("bad address '{text}'"))?;
        if let Endpoint::Tcp { host, .. } = &endpoint {
            let loopback = host.is_empty()
                || host == "localhost"
                || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                bail!("'{text}': the simulator listens on loopback addresses only (127.0.0.1, ::1, localhost)");
            }
        }
        endpoints.push(endpoint);
    }
    if args.vms == 1 {
        let uuid = None;
        return Ok(vec![Plan { endpoints, name: args.name.clone(), uuid }]);
    }
    let dir = match endpoints.as_slice() {
        [Endpoint::Unix(dir)] => dir.clone(),
        _ => bail!("--vms needs exactly one --listen DIR, the directory for the sockets"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok((1..=args.vms)
        .map(|i| Plan {
            endpoints: vec![Endpoint::Unix(dir.join(format!("vm-{i:04}.sock")))],
            name: Some(match &args.name {
                Some(name) => format!("{name}-{i:04}"),
                None => format!("vm-{i:04}"),
            }),
            uuid: Some(format!("00000000-0000-4000-8000-{i:012x}")),
        })
        .collect())
}

async fn serve(args: &Args, plans: Vec<Plan>) -> anyhow::Result<()> {
    // Handle the signals before printing any address: a script that reads the address and
    // then signals must find the handlers in place.
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut running: Vec<RunningSim> = Vec::new();
    let mut interrupted = false;
    for plan in plans {
        let mut builder = Sim::builder()
            .version(&args.qemu_version)
            .paused(args.paused)
            .faults(args.faults)
            .no_shutdown(args.no_shutdown)
            .acpi_guest(args.acpi_guest)
            .clients(if args.many_clients { ClientPolicy::Many } else { ClientPolicy::One });
        if let Some(name) = &plan.name {
            builder = builder.name(name);
        }
        if let Some(uuid) = &plan.uuid {
            builder = builder.uuid(uuid);
        }
        for endpoint in plan.endpoints {
            builder = builder.listen(endpoint);
        }
        // Starting thousands of machines takes a while; a signal meanwhile stops it.
        let sim = tokio::select! {
            sim = builder.start() => sim?,
            _ = interrupt.recv() => { interrupted = true; break }
            _ = terminate.recv() => { interrupted = true; break }
        };
        for endpoint in sim.endpoints() {
            print_address(args, plan.name.as_deref(), endpoint, sim.machine().profile());
        }
        running.push(sim);
    }
    let sims: Vec<Sim> = running.iter().map(|r| r.sim().clone()).collect();
    let mut waits = tokio::task::JoinSet::new();
    for sim in running {
        waits.spawn(sim.wait());
    }
    while !interrupted {
        tokio::select! {
            finished = waits.join_next() => match finished {
                Some(result) => result??,
                None => return Ok(()),
            },
            _ = interrupt.recv() => interrupted = true,
            _ = terminate.recv() => interrupted = true,
        }
    }
    // A signal: as QEMU, every machine tells its clients (`SHUTDOWN`, `host-signal`), closes
    // its connections and removes its sockets.
    for sim in &sims {
        sim.machine().host_signal();
    }
    while let Some(result) = waits.join_next().await {
        result??;
    }
    Ok(())
}

fn print_address(args: &Args, name: Option<&str>, endpoint: &Endpoint, profile: qmpkit_sim::Profile) {
    use std::io::Write;
    let line = if args.json {
        let mut value = serde_json::json!({"address": endpoint.to_string(), "qemu": profile.to_string()});
        match endpoint {
            Endpoint::Unix(path) => {
                value["transport"] = "unix".into();
                value["path"] = path.display().to_string().into();
            }
            Endpoint::Tcp { host, port } => {
                value["transport"] = "tcp".into();
                value["host"] = host.as_str().into();
                value["port"] = (*port).into();
            }
        }
        if let Some(name) = name {
            value["name"] = name.into();
        }
        value.to_string()
    } else {
        match name {
            Some(name) if args.vms > 1 => format!("{name} {endpoint}"),
            _ => endpoint.to_string(),
        }
    };
    // Scripts wait for these lines before connecting, so they must not sit in a buffer.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
