//! `qmp wrap`: start QEMU connected to a socket of ours, and open the shell on it
//! (`qmp-shell-wrap`). QEMU is stopped and its files removed when the shell ends.

use qmpkit::launch::Launcher;
use qmpkit::transport::{Endpoint, Listener};

use crate::common::{self, Failure};
use crate::shell::{self, ShellOptions, Target};

/// Arguments of `qmp wrap`.
#[derive(Debug, clap::Args)]
#[command(after_help = "QEMU runs headless (-nodefaults -display none) and connects its monitor to a socket in a\n\
private directory; the shell ends QEMU when it ends. Without a command, $QMPKIT_QEMU or\n\
qemu-system-x86_64 with -machine none; arguments that start with '-' go to that default binary.\n\n\
Examples:\n  qmp wrap\n  qmp wrap -- -M pc -accel tcg -m 256 -S\n  qmp wrap -H -- qemu-system-aarch64 -M virt")]
pub(crate) struct WrapArgs {
    #[command(flatten)]
    options: ShellOptions,
    /// The emulator (optional) and its arguments.
    #[arg(last = true, value_name = "QEMU ARGS", help = "[QEMU] [ARGS...]: the emulator and its arguments")]
    qemu: Vec<String>,
}

/// The launcher for `qemu`: its first word is the binary unless it is an option.
fn launcher(qemu: &[String]) -> Launcher {
    match qemu.split_first() {
        Some((binary, args)) if !binary.starts_with('-') => Launcher::system().binary(binary).args(args),
        _ => Launcher::system().args(qemu),
    }
}

/// Runs `qmp wrap` and returns the exit status.
pub(crate) fn run(args: WrapArgs, verbose: u8) -> i32 {
    common::finish("wrap", run_inner(args, verbose))
}

fn run_inner(args: WrapArgs, verbose: u8) -> Result<i32, Failure> {
    let dir = tempfile::Builder::new()
        .prefix("qmp-wrap-")
        .tempdir()
        .map_err(|e| Failure::Failed(format!("cannot make a private directory: {e}")))?;
    let path = dir.path().join("qmp.sock");
    common::runtime()?.block_on(async {
        let listener = Listener::bind(&Endpoint::Unix(path.clone()), 0o600)
            .await
            .map_err(|e| Failure::Failed(format!("cannot listen on {}: {e}", path.display())))?;
        let instance =
            launcher(&args.qemu).connect_to(&path).start_async().await.map_err(|e| Failure::Failed(e.to_string()))?;
        let client = shell::builder(&args.options)
            .accept_on(&listener)
            .await
            .map_err(|e| Failure::Failed(format!("QEMU did not connect: {e}")))?;
        let outcome = shell::run_session(client, Target::Accepted, args.options, verbose).await;
        // Dropping the instance ends QEMU and removes its directory; the socket's goes with
        // `dir`.
        drop(instance);
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_word_is_the_binary_unless_an_option() {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let shown = |l: Launcher| format!("{l:?}");
        assert!(shown(launcher(&words(&["qemu-system-aarch64", "-M", "virt"]))).contains("qemu-system-aarch64"));
        let default = shown(launcher(&words(&["-M", "pc"])));
        assert!(default.contains("\"-M\"") && default.contains("\"pc\""), "{default}");
    }
}
