//! The escaping of the QEMU transcripts that qmpkit's tests replay.
//!
//! A transcript line holds printable ASCII verbatim, `\\` for a backslash, `\r \n \t` for
//! those bytes and `\xNN` for any other byte. Shared by this crate's unit tests and the
//! cross-crate tests.

/// Undoes the transcript escaping.
///
/// # Panics
/// On an escape the format does not have, which would be a broken transcript in the tests.
#[must_use]
pub fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'\\' => out.push(b'\\'),
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'x' => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).expect("hex digits");
                    out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                    i += 4;
                    continue;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn undoes_every_escape() {
        assert_eq!(super::unescape(r"a\\b\r\n\t\xff\x00"), b"a\\b\r\n\t\xff\x00");
    }
}
