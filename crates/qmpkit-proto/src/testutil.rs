//! Helpers for the unit tests: reading the QEMU transcripts in `tests/data`.

use std::path::PathBuf;

use crate::transcript::unescape;

/// Who wrote a transcript line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// The marker the capture tool left where it elided the middle of a long line.
const ELIDED: &[u8] = b"...<truncated>...";

/// Whether a transcript line was elided, so that its bytes are not what was on the wire. The
/// capture tool marks an elided middle with `...<truncated>...` and a cut end with
/// `...<N bytes>`.
pub(crate) fn is_elided(line: &[u8]) -> bool {
    let contains = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
    contains(ELIDED) || (line.ends_with(b" bytes>") && contains(b"...<"))
}

/// One transcript: its name and its lines in order.
pub(crate) struct Transcript {
    pub(crate) name: String,
    pub(crate) lines: Vec<(Side, Vec<u8>)>,
}

/// Every transcript of one QEMU version (`"7.2"` or `"10.0"`).
pub(crate) fn transcripts(version: &str) -> Vec<Transcript> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(format!("qemu-{version}"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("transcript directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(paths.len() > 30, "transcripts missing in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("transcript text");
            let lines = text
                .lines()
                .filter_map(|line| {
                    if let Some(rest) = line.strip_prefix("C: ") {
                        Some((Side::Client, unescape(rest)))
                    } else {
                        line.strip_prefix("S: ").map(|rest| (Side::Server, unescape(rest)))
                    }
                })
                .collect();
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            Transcript { name, lines }
        })
        .collect()
}
