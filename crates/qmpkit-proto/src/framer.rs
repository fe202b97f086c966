//! A streaming framer: push bytes, pop complete top-level JSON values.
//!
//! QMP has no message delimiter: QEMU's monitor feeds every byte it reads into a JSON lexer
//! (`qobject/json-lexer.c`) and a "streamer" (`qobject/json-streamer.c`) that counts braces and
//! brackets and hands a message to the parser as soon as the count returns to zero. A newline
//! means nothing to it. [`Framer`] reproduces that machinery so that both ends of a connection
//! see exactly the message boundaries, errors and recovery points QEMU sees:
//!
//! * a value is complete when the bracket+brace depth returns to 0, or at once when it goes
//!   negative (the parser above then reports `expecting value` or a separator error);
//! * a scalar at top level is a frame of its own as soon as its token completes; a number or
//!   keyword completes at the first byte that cannot continue it;
//! * a lexical error ([`FrameError::Stray`]) discards the partial message and makes the lexer
//!   skip input until a structural character (`[ ] { } : ,`), an ASCII control character other
//!   than `\t`, or one of the impossible bytes `0xFE`/`0xFF` (QEMU's `IN_RECOVERY` state);
//! * the limits of [`Limits`] (QEMU's token size, token count and nesting depth) discard the
//!   message and continue with the rest of the input, as QEMU does.
//!
//! Most input is ordinary (brackets, whitespace, strings without escapes, integers, keywords),
//! and runs of it are lexed at once by a fast path that keeps the streamer's counters exactly
//! as the byte-at-a-time state machine would; anything else goes to that state machine. The
//! tests run both on the same input and require the same results and state after every call.
//!
//! The framer only finds boundaries: it does not decode values. In [`Mode::Client`] the frames
//! are QEMU's output and are decoded with `serde_json`; in [`Mode::Server`] they are a client's
//! input and are decoded with [`crate::qjson::parse_input`].
//!
//! # Deviations from QEMU
//! * QEMU counts only token bytes against the size limit and never stores insignificant
//!   whitespace. A frame is the exact input bytes of a value, whitespace included, so that memory
//!   stays bounded the framer also gives up (with [`FrameError::TooLarge`], reported where QEMU
//!   would have emitted the message) when the raw bytes of one message, whitespace included,
//!   exceed [`Limits::max_message_bytes`]. For input without huge runs of whitespace inside a
//!   message the verdicts are identical.
//! * Once a message is known to be too large its bytes are no longer kept, so a lexical error
//!   later in that same message carries only the part of the offending token still held.
//! * In [`Mode::Client`] the framer is stricter than QEMU's lexer: single-quoted strings are
//!   stray input, and a backslash in a string must be followed by one of `" \ / b f n r t u`.
//!   QEMU never writes anything else.

/// Which side of the connection the framer reads, which decides the string syntax it accepts.
///
/// QEMU's lexer accepts two extensions in the input it reads from clients. A client reading
/// QEMU's output has no reason to accept them, since QEMU always writes strict JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Reads QEMU's output: strict JSON, strings delimited by `"` only.
    Client,
    /// Reads a client's input with QEMU's extensions: single-quoted strings (which may contain
    /// unescaped `"`) and the escape `\'` in both kinds of strings.
    Server,
}

/// Per-message limits, so that a peer cannot make the framer allocate without bound.
///
/// The defaults are QEMU's (`MAX_TOKEN_SIZE`, `MAX_NESTING` and `MAX_TOKEN_COUNT` in
/// `qobject/json-streamer.c`), so that a server built on this crate rejects exactly what QEMU
/// rejects and a client accepts everything QEMU can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum total size of the tokens of one message. As in QEMU, a message fails as soon
    /// as its token bytes reach this value (QEMU reserves one byte for a terminating NUL), and
    /// a single token longer than this is cut off where it crosses the limit.
    pub max_message_bytes: usize,
    /// Maximum bracket+brace nesting depth: this depth is accepted, one more is rejected.
    pub max_depth: usize,
    /// Maximum number of tokens in one message (strings, numbers, keywords and each of
    /// `[ ] { } : ,` count one each).
    pub max_tokens: usize,
}

impl Default for Limits {
    /// QEMU's limits: 64 MiB of tokens, depth 1024, 2 Mi (2,097,152) tokens.
    fn default() -> Limits {
        Limits { max_message_bytes: 64 << 20, max_depth: 1024, max_tokens: 2 << 20 }
    }
}

/// The exact bytes of one complete top-level JSON value, without surrounding whitespace.
///
/// Frames are handed over as owned buffers so that a large reply can be passed to a decoder
/// without copying it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame(Vec<u8>);

impl Frame {
    /// Returns the bytes of the value, for decoding in place.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Returns the bytes of the value as an owned buffer, without copying.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Why the framer discarded (part of) a message. Each variant displays as the `desc` text QEMU
/// sends in its `GenericError` reply, so a server can answer exactly as QEMU does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A lexical error. Holds the bytes of the offending token up to and including the byte
    /// that made it invalid; it displays as `JSON parse error, stray '<token>'` with the bytes
    /// rendered lossily and cut at the first NUL, as QEMU's C string formatting does.
    #[error("JSON parse error, stray '{}'", stray_text(.0))]
    Stray(Vec<u8>),
    /// The tokens of one message reached [`Limits::max_message_bytes`].
    #[error("JSON token size limit exceeded")]
    TooLarge,
    /// One message had more than [`Limits::max_tokens`] tokens.
    #[error("JSON token count limit exceeded")]
    TooManyTokens,
    /// The nesting depth went beyond [`Limits::max_depth`].
    #[error("JSON nesting depth limit exceeded")]
    TooDeep,
}

/// Feeds `chunks` (pushed one by one) to a framer and to one that never takes the fast path,
/// and panics unless both yield the same frames and errors in the same order and hold exactly
/// the same state after every call. Returns what they yielded. The differential tests and the
/// `framer` fuzz target stand on this.
pub(crate) fn assert_fast_path_matches(mode: Mode, limits: Limits, chunks: &[&[u8]]) -> Vec<Result<Frame, FrameError>> {
    let mut fast = Framer::new(mode, limits);
    let mut slow = Framer { slow_only: true, ..Framer::new(mode, limits) };
    let mut out = Vec::new();
    for chunk in chunks {
        fast.push(chunk);
        slow.push(chunk);
        loop {
            let got = fast.next_frame();
            let want = slow.next_frame();
            assert_eq!(got, want, "{mode:?} {limits:?}: the fast path yields another result for {chunks:?}");
            assert!(
                fast.same_state(&slow),
                "{mode:?} {limits:?}: the fast path leaves {fast:?}, not {slow:?}, for {chunks:?}"
            );
            match got {
                Some(item) => out.push(item),
                None => break,
            }
        }
        assert_eq!(fast.is_mid_message(), slow.is_mid_message());
        assert_eq!(fast.buffered_len(), slow.buffered_len());
    }
    out
}

/// Renders stray token bytes the way QEMU's `"%s"` does: up to the first NUL, lossily.
fn stray_text(bytes: &[u8]) -> String {
    let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The lexer state: QEMU's `json_lexer` DFA states, with the string states split by quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between tokens (QEMU's `IN_START`).
    Start,
    /// Skipping input after a lexical error (QEMU's `IN_RECOVERY`).
    Recovery,
    /// Inside a `"` string.
    DqString,
    /// After a backslash inside a `"` string.
    DqEscape,
    /// Inside a `'` string (server mode only).
    SqString,
    /// After a backslash inside a `'` string.
    SqEscape,
    /// After a leading `0` (or `-0`).
    Zero,
    /// In the integer digits of a number.
    Digits,
    /// After a leading `-`.
    Sign,
    /// After the decimal point, before any fraction digit.
    Mantissa,
    /// In the fraction digits.
    MantissaDigits,
    /// After `e`/`E`.
    ExpE,
    /// After the sign of an exponent.
    ExpSign,
    /// In the exponent digits.
    ExpDigits,
    /// In a keyword (`[a-z]+`; the parser decides which are valid).
    Keyword,
}

impl Lex {
    /// Whether a token is partially lexed.
    fn in_token(self) -> bool {
        !matches!(self, Lex::Start | Lex::Recovery)
    }
}

/// What a completed token means to the streamer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Other,
}

/// The outcome of one scan step that produced something for the caller.
type Emit = Result<(usize, usize), FrameError>;

/// Splits a byte stream into top-level JSON values exactly where QEMU's lexer and streamer do.
///
/// Push bytes with [`Framer::push`] as they arrive (split anywhere), then call
/// [`Framer::next_frame`] until it returns `None`. Each call scans only bytes it has not seen
/// before, so a message that arrives in many small pieces costs linear time overall. The
/// framer keeps only the unfinished message between calls; after a limit error it keeps at most
/// [`Limits::max_message_bytes`] plus one push.
///
/// ```
/// use qmpkit_proto::{Framer, Limits, Mode};
///
/// let mut framer = Framer::new(Mode::Client, Limits::default());
/// framer.push(b"{\"return\": {}}\r\n{\"ev");
/// assert_eq!(framer.next_frame().unwrap().unwrap().as_bytes(), b"{\"return\": {}}");
/// assert!(framer.next_frame().is_none());
/// assert!(framer.is_mid_message());
/// ```
#[derive(Debug, Clone)]
pub struct Framer {
    mode: Mode,
    limits: Limits,
    /// Buffered input; bytes before `pos` have been lexed.
    buf: Vec<u8>,
    /// Next byte to lex.
    pos: usize,
    /// Where the current message's first token starts (valid while a message is open).
    msg_start: usize,
    /// Where the current token starts (valid while `state.in_token()`).
    tok_start: usize,
    /// Bytes of the current token already dropped from `buf` (only for doomed messages).
    tok_dropped: usize,
    state: Lex,
    brace: isize,
    bracket: isize,
    /// Tokens in the current message.
    ntokens: usize,
    /// Total bytes of those tokens.
    token_size: usize,
    /// The current message is too large to keep: its bytes are discarded as they are lexed and
    /// it ends in [`FrameError::TooLarge`] at the latest where it would have been emitted.
    doomed: bool,
    /// Lex everything with the byte-at-a-time state machine, never with [`Framer::scan_plain`]:
    /// the reference the fast path is tested against.
    slow_only: bool,
}

impl Framer {
    /// Creates a framer for one side of a connection with the given limits.
    pub fn new(mode: Mode, limits: Limits) -> Framer {
        Framer {
            mode,
            limits,
            buf: Vec::new(),
            pos: 0,
            msg_start: 0,
            tok_start: 0,
            tok_dropped: 0,
            state: Lex::Start,
            brace: 0,
            bracket: 0,
            ntokens: 0,
            token_size: 0,
            doomed: false,
            slow_only: false,
        }
    }

    /// Appends bytes received from the peer. They may end anywhere, even inside a token or a
    /// UTF-8 sequence; call [`Framer::next_frame`] afterwards until it returns `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Returns the next complete value or error, or `None` when more input is needed.
    ///
    /// Errors are returned in stream order, interleaved with frames, exactly where QEMU would
    /// emit them; after an error the framer goes on with the rest of the input, so one bad
    /// message can yield several results.
    #[inline]
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        if self.pos == self.buf.len() && !self.slow_only {
            // Nothing new since the last call (the usual last call after a frame). The state
            // machine would stop at once in every state (it checks a token's size whenever
            // it scanned bytes), and the raw-size check in `scan` would find what it found
            // last time: after a frame or an error no message is open.
            return None;
        }
        self.next_frame_scanned()
    }

    /// [`Framer::next_frame`] once there is something to scan.
    fn next_frame_scanned(&mut self) -> Option<Result<Frame, FrameError>> {
        match self.scan()? {
            Ok((start, end)) => Some(Ok(self.take_frame(start, end))),
            Err(e) => Some(Err(e)),
        }
    }

    /// Whether a value has started but is not complete: an open bracket or brace, or a token
    /// partially received. Used to tell a clean end of stream from one in the middle of a
    /// message. Only bytes already scanned by [`Framer::next_frame`] count.
    pub fn is_mid_message(&self) -> bool {
        self.ntokens > 0 || self.state.in_token()
    }

    /// Returns how many bytes are buffered and not yet handed out (scanned or not).
    pub fn buffered_len(&self) -> usize {
        let keep = if self.is_mid_message() && !self.doomed { self.open_start() } else { self.pos };
        self.buf.len() - keep
    }

    /// Whether two framers hold exactly the same input and state, whichever path they take.
    fn same_state(&self, other: &Framer) -> bool {
        // Destructured, so that a field added later cannot be left out here.
        let Framer {
            mode,
            limits,
            buf,
            pos,
            msg_start,
            tok_start,
            tok_dropped,
            state,
            brace,
            bracket,
            ntokens,
            token_size,
            doomed,
            slow_only: _,
        } = self;
        (*mode, *limits, buf, *pos, *msg_start, *tok_start, *tok_dropped)
            == (other.mode, other.limits, &other.buf, other.pos, other.msg_start, other.tok_start, other.tok_dropped)
            && (*state, *brace, *bracket, *ntokens, *token_size, *doomed)
                == (other.state, other.brace, other.bracket, other.ntokens, other.token_size, other.doomed)
    }

    /// Drops all buffered input and lexer state, as QEMU does when a client disconnects.
    pub fn reset(&mut self) {
        *self = Framer { slow_only: self.slow_only, ..Framer::new(self.mode, self.limits) };
    }

    /// Where the bytes of the open message start in `buf`.
    fn open_start(&self) -> usize {
        if self.ntokens > 0 { self.msg_start } else { self.tok_start }
    }

    /// Drops bytes that are no longer needed from the front of the buffer.
    fn compact(&mut self) {
        let keep = if self.is_mid_message() && !self.doomed {
            self.open_start()
        } else {
            if self.state.in_token() {
                // Doomed message: forget the token's bytes but remember their number, for the
                // single-token size cut.
                self.tok_dropped += self.pos - self.tok_start;
                self.tok_start = self.pos;
            }
            self.pos
        };
        if keep == 0 {
            return;
        }
        if keep == self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..keep);
        }
        self.pos -= keep;
        self.msg_start = self.msg_start.saturating_sub(keep);
        self.tok_start = self.tok_start.saturating_sub(keep);
    }

    /// Hands out `buf[start..end]`. A large frame that fills the buffer is handed over without
    /// copying; a small one is copied so that the buffer's allocation is reused.
    fn take_frame(&mut self, start: usize, end: usize) -> Frame {
        // The size first: it rules out the hand-over for almost every frame.
        if end - start < 4096 || start != 0 || self.buf.len() - end > 4096 {
            return Frame(self.buf[start..end].to_vec());
        }
        let tail = &self.buf[end..];
        // Only whitespace after the frame (typically its "\r\n"): lexing it would not change
        // any state, so it is skipped instead of kept.
        let only_ws = tail.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        let tail = if only_ws { Vec::new() } else { tail.to_vec() };
        self.buf.truncate(end);
        let bytes = std::mem::replace(&mut self.buf, tail);
        self.pos = if only_ws { 0 } else { self.pos - end };
        self.msg_start = 0;
        self.tok_start = 0;
        Frame(bytes)
    }

    /// Forgets the current message (QEMU's `out_emit`).
    fn reset_message(&mut self) {
        self.brace = 0;
        self.bracket = 0;
        self.ntokens = 0;
        self.token_size = 0;
        self.doomed = false;
        self.tok_dropped = 0;
    }

    /// Reports a lexical error for the token `buf[tok_start..end]` and enters recovery.
    fn stray(&mut self, end: usize) -> Emit {
        let bytes = self.buf[self.tok_start..end].to_vec();
        self.reset_message();
        self.state = Lex::Recovery;
        Err(FrameError::Stray(bytes))
    }

    /// Starts a token at `at`.
    #[inline]
    fn begin_token(&mut self, at: usize, state: Lex) {
        self.tok_start = at;
        self.tok_dropped = 0;
        if self.ntokens == 0 && !self.doomed {
            self.msg_start = at;
        }
        self.state = state;
    }

    /// Feeds a completed token `buf[start..end]` to the streamer (QEMU's
    /// `json_message_process_token`). Returns what the streamer emits, if anything.
    #[inline]
    fn complete(&mut self, tok: Tok, start: usize, end: usize) -> Option<Emit> {
        match tok {
            Tok::LCurly => self.brace += 1,
            Tok::RCurly => self.brace -= 1,
            Tok::LSquare => self.bracket += 1,
            Tok::RSquare => self.bracket -= 1,
            Tok::Other => {}
        }
        let len = self.tok_dropped + (end - start);
        self.tok_dropped = 0;
        if self.ntokens == 0 && !self.doomed {
            self.msg_start = start;
        }
        // QEMU: token_size + len + 1 > MAX_TOKEN_SIZE (the 1 is for the NUL terminator).
        if self.token_size.saturating_add(len) >= self.limits.max_message_bytes {
            self.reset_message();
            return Some(Err(FrameError::TooLarge));
        }
        if self.ntokens >= self.limits.max_tokens {
            self.reset_message();
            return Some(Err(FrameError::TooManyTokens));
        }
        let depth = self.brace.saturating_add(self.bracket);
        if depth > 0 && depth as usize > self.limits.max_depth {
            self.reset_message();
            return Some(Err(FrameError::TooDeep));
        }
        self.token_size += len;
        self.ntokens += 1;
        if (self.brace > 0 || self.bracket > 0) && self.brace >= 0 && self.bracket >= 0 {
            return None;
        }
        Some(self.end_message(end))
    }

    /// The streamer hands over the current message, which ends at `end`: a frame, or the size
    /// error of a message too large to keep.
    #[inline]
    fn end_message(&mut self, end: usize) -> Emit {
        let doomed = self.doomed;
        self.reset_message();
        if doomed { Err(FrameError::TooLarge) } else { Ok((self.msg_start, end)) }
    }

    /// The lexer's single-token cut: a token longer than the size limit is handed to the
    /// streamer (which rejects it) and lexing restarts at the next byte in the start state.
    #[inline]
    fn token_too_long(&self, end: usize) -> bool {
        self.tok_dropped + (end - self.tok_start) > self.limits.max_message_bytes
    }

    fn cut_token(&mut self) -> Emit {
        self.reset_message();
        self.state = Lex::Start;
        Err(FrameError::TooLarge)
    }

    /// Lexes from `pos` until something is emitted or the input runs out.
    fn scan(&mut self) -> Option<Emit> {
        let out = self.lex();
        if out.is_none() && self.is_mid_message() && !self.doomed {
            let raw = self.buf.len() - self.open_start();
            if raw > self.limits.max_message_bytes {
                self.doomed = true;
            }
        }
        out
    }

    /// Lexes from `pos` with the fast path while it can, then with the state machine.
    #[inline]
    fn lex(&mut self) -> Option<Emit> {
        if self.state == Lex::Start && !self.slow_only {
            let out = self.scan_plain();
            if out.is_some() || self.pos == self.buf.len() {
                return out;
            }
        }
        self.scan_inner()
    }

    /// The fast path, called between tokens (QEMU's `IN_START`) inside a message or at its
    /// start: lexes a run of ordinary tokens from `pos` at once and leaves `pos` where it
    /// stopped. Returns what the streamer emitted if the last token ended a message or broke
    /// the depth limit; otherwise the state machine in [`Framer::scan_inner`] goes on from `pos`.
    ///
    /// It takes only tokens whose bytes leave the state machine no decision to make, and only
    /// when the byte that ends them is already buffered: whitespace, `{ } [ ] : ,`, `"` strings
    /// without a backslash or a byte invalid in a string, integers without fraction or exponent
    /// (`-?(0|[1-9][0-9]*)`), and keywords (`[a-z]+`). For such a token the state machine would
    /// set `tok_start` (in [`Framer::begin_token`]), step through its bytes without any other
    /// effect, and hand `buf[start..end]` to [`Framer::complete`]. This function finds the same
    /// token and does the same, with one shortcut: while a token provably makes
    /// [`Framer::complete`] return `None` (the message stays open and no limit is reached), it
    /// applies that function's effects to local copies of the counters instead of calling it:
    /// * the run is kept short enough that no token in it can reach the size or count limit
    ///   (nor be long enough for the lexer to cut it);
    /// * the run starts inside a message or with `{`/`[`, so the message is open before each
    ///   token and only `{ [` can break the depth limit and only `} ]` can end the message.
    ///
    /// Such a `{ [ } ]` ends the run: a `}`/`]` that closes the message at depth 1 is handed
    /// over by [`Framer::end_message`] (all that [`Framer::complete`] does for it when no limit
    /// can be reached), anything else goes through [`Framer::complete`] itself. At anything else
    /// (single quotes, escapes, fractions, exponents, stray or control bytes, a top-level
    /// scalar, a token that reaches the end of the run) it stops before the token, in the start
    /// state with every counter as the state machine would have it there.
    #[inline(never)]
    fn scan_plain(&mut self) -> Option<Emit> {
        let mut i = self.pos;
        // Between tokens `complete` leaves no dropped bytes, both counters non-negative with a
        // sum within the depth limit, and the size and count below their limits (a token that
        // would break one of these ends the message instead).
        debug_assert!(self.tok_dropped == 0 && self.brace >= 0 && self.bracket >= 0);
        debug_assert!((self.brace + self.bracket) as usize <= self.limits.max_depth);
        debug_assert!(self.ntokens <= self.limits.max_tokens);
        debug_assert!(self.token_size < self.limits.max_message_bytes || self.ntokens == 0);
        // Every token has at least one byte, so the tokens within `room` bytes stay below the
        // size limit (`token_size + len < max_message_bytes`) and within the count limit.
        let size_room = self.limits.max_message_bytes.saturating_sub(self.token_size).saturating_sub(1);
        let room = size_room.min(self.limits.max_tokens - self.ntokens);
        let buf = &self.buf[..self.buf.len().min(i.saturating_add(room))];
        let end = buf.len();
        while i < end && matches!(buf[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if i == end || (self.brace + self.bracket == 0 && !matches!(buf[i], b'{' | b'[')) {
            self.pos = i;
            return None;
        }
        let max_depth = self.limits.max_depth;
        let (mut brace, mut bracket) = (self.brace, self.bracket);
        // Tokens taken, and the whitespace between them (all other bytes are theirs).
        let (mut ntokens, mut spaces) = (0, 0);
        let mut tok_start = self.tok_start;
        // The first token, where a message starts if none is open.
        let first = i;
        // The `{ [ } ]` that `complete` must judge, if the run ends with one.
        let mut last = None;
        while i < end {
            let len = match buf[i] {
                b',' | b':' => 1,
                b'{' if ((brace + bracket) as usize) < max_depth => {
                    brace += 1;
                    1
                }
                b'[' if ((brace + bracket) as usize) < max_depth => {
                    bracket += 1;
                    1
                }
                b'}' if brace > 0 && brace + bracket > 1 => {
                    brace -= 1;
                    1
                }
                b']' if bracket > 0 && brace + bracket > 1 => {
                    bracket -= 1;
                    1
                }
                b'{' => {
                    last = Some(Tok::LCurly);
                    break;
                }
                b'[' => {
                    last = Some(Tok::LSquare);
                    break;
                }
                b'}' => {
                    last = Some(Tok::RCurly);
                    break;
                }
                b']' => {
                    last = Some(Tok::RSquare);
                    break;
                }
                b'"' => match plain_string_len(&buf[i..]) {
                    Some(len) => {
                        tok_start = i;
                        len
                    }
                    None => break,
                },
                b'-' | b'0'..=b'9' => match plain_integer_len(&buf[i..]) {
                    Some(len) => {
                        tok_start = i;
                        len
                    }
                    None => break,
                },
                b'a'..=b'z' => {
                    let mut j = i + 1;
                    while j < end && buf[j].is_ascii_lowercase() {
                        j += 1;
                    }
                    if j == end {
                        break;
                    }
                    tok_start = i;
                    j - i
                }
                _ => break,
            };
            ntokens += 1;
            i += len;
            while i < end && matches!(buf[i], b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
                spaces += 1;
            }
        }
        if self.ntokens == 0 && !self.doomed && ntokens > 0 {
            self.msg_start = first;
        }
        (self.brace, self.bracket) = (brace, bracket);
        self.ntokens += ntokens;
        // Whitespace before the first token was skipped before `first`.
        self.token_size += i - first - spaces;
        self.tok_start = tok_start;
        match last {
            Some(tok) => {
                self.pos = i + 1;
                // A bracket that closes the message breaks no limit within `room`.
                match tok {
                    Tok::RCurly if (brace, bracket) == (1, 0) => Some(self.end_message(i + 1)),
                    Tok::RSquare if (brace, bracket) == (0, 1) => Some(self.end_message(i + 1)),
                    _ => self.complete(tok, i, i + 1),
                }
            }
            None => {
                self.pos = i;
                None
            }
        }
    }

    /// The byte-at-a-time state machine: QEMU's lexer and streamer, for every input.
    #[inline(never)]
    fn scan_inner(&mut self) -> Option<Emit> {
        let n = self.buf.len();
        let server = self.mode == Mode::Server;
        let mut i = self.pos;
        loop {
            match self.state {
                Lex::Start => {
                    if !self.slow_only {
                        self.pos = i;
                        let out = self.scan_plain();
                        i = self.pos;
                        if out.is_some() {
                            self.pos = i;
                            return out;
                        }
                    }
                    // Between tokens: whitespace and one-byte tokens are handled here.
                    loop {
                        if i >= n {
                            self.pos = i;
                            return None;
                        }
                        let b = self.buf[i];
                        let tok = match b {
                            b' ' | b'\t' | b'\r' | b'\n' => {
                                i += 1;
                                continue;
                            }
                            b'{' => Tok::LCurly,
                            b'}' => Tok::RCurly,
                            b'[' => Tok::LSquare,
                            b']' => Tok::RSquare,
                            b',' | b':' => Tok::Other,
                            b'"' => {
                                self.begin_token(i, Lex::DqString);
                                i += 1;
                                break;
                            }
                            b'\'' if server => {
                                self.begin_token(i, Lex::SqString);
                                i += 1;
                                break;
                            }
                            b'0' => {
                                self.begin_token(i, Lex::Zero);
                                i += 1;
                                break;
                            }
                            b'1'..=b'9' => {
                                self.begin_token(i, Lex::Digits);
                                i += 1;
                                break;
                            }
                            b'-' => {
                                self.begin_token(i, Lex::Sign);
                                i += 1;
                                break;
                            }
                            b'a'..=b'z' => {
                                self.begin_token(i, Lex::Keyword);
                                i += 1;
                                break;
                            }
                            _ => {
                                self.tok_start = i;
                                self.tok_dropped = 0;
                                self.pos = i + 1;
                                return Some(self.stray(i + 1));
                            }
                        };
                        i += 1;
                        if let Some(out) = self.complete(tok, i - 1, i) {
                            self.pos = i;
                            return Some(out);
                        }
                    }
                    if self.token_too_long(i) {
                        self.pos = i;
                        return Some(self.cut_token());
                    }
                }
                Lex::Recovery => {
                    while i < n {
                        match self.buf[i] {
                            b'\t' => i += 1,
                            b'[' | b']' | b'{' | b'}' | b':' | b',' | 0..=0x1F | 0xFE | 0xFF => {
                                self.state = Lex::Start;
                                break;
                            }
                            _ => i += 1,
                        }
                    }
                    if i >= n {
                        self.pos = i;
                        return None;
                    }
                }
                Lex::DqString | Lex::SqString => {
                    let quote = if self.state == Lex::DqString { b'"' } else { b'\'' };
                    // Scan at most up to the byte at which the token would exceed the limit.
                    let allowed =
                        (self.limits.max_message_bytes + 1).saturating_sub(self.tok_dropped + (i - self.tok_start));
                    let lim = n.min(i.saturating_add(allowed));
                    match find_special(&self.buf[i..lim], quote) {
                        Some(off) => {
                            let at = i + off;
                            let b = self.buf[at];
                            i = at + 1;
                            if b == quote {
                                self.state = Lex::Start;
                                let start = self.tok_start;
                                if let Some(out) = self.complete(Tok::Other, start, i) {
                                    self.pos = i;
                                    return Some(out);
                                }
                                continue;
                            } else if b == b'\\' {
                                self.state = if quote == b'"' { Lex::DqEscape } else { Lex::SqEscape };
                            } else {
                                self.pos = i;
                                return Some(self.stray(i));
                            }
                        }
                        None => i = lim,
                    }
                    if self.token_too_long(i) {
                        self.pos = i;
                        return Some(self.cut_token());
                    }
                    if i >= n {
                        self.pos = i;
                        return None;
                    }
                }
                Lex::DqEscape | Lex::SqEscape => {
                    if i >= n {
                        self.pos = i;
                        return None;
                    }
                    let b = self.buf[i];
                    i += 1;
                    let ok = if server {
                        (0x20..=0xFD).contains(&b)
                    } else {
                        matches!(b, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u')
                    };
                    if !ok {
                        self.pos = i;
                        return Some(self.stray(i));
                    }
                    self.state = if self.state == Lex::DqEscape { Lex::DqString } else { Lex::SqString };
                    if self.token_too_long(i) {
                        self.pos = i;
                        return Some(self.cut_token());
                    }
                }
                _ => {
                    // Numbers and keywords: short tokens, lexed a byte at a time.
                    loop {
                        if i >= n {
                            self.pos = i;
                            return None;
                        }
                        let b = self.buf[i];
                        let next = match (self.state, b) {
                            (Lex::Keyword, b'a'..=b'z') => Some(Lex::Keyword),
                            (Lex::Keyword, _) => None,
                            (Lex::Sign, b'0') => Some(Lex::Zero),
                            (Lex::Sign, b'1'..=b'9') => Some(Lex::Digits),
                            (Lex::Zero, b'.') | (Lex::Digits, b'.') => Some(Lex::Mantissa),
                            (Lex::Zero, _) if b.is_ascii_digit() => Some(Lex::Recovery),
                            (Lex::Zero, _) => None,
                            (Lex::Digits, b'0'..=b'9') => Some(Lex::Digits),
                            (Lex::Digits, b'e' | b'E') => Some(Lex::ExpE),
                            (Lex::Digits, _) => None,
                            (Lex::Mantissa, b'0'..=b'9') => Some(Lex::MantissaDigits),
                            (Lex::MantissaDigits, b'0'..=b'9') => Some(Lex::MantissaDigits),
                            (Lex::MantissaDigits, b'e' | b'E') => Some(Lex::ExpE),
                            (Lex::MantissaDigits, _) => None,
                            (Lex::ExpE, b'+' | b'-') => Some(Lex::ExpSign),
                            (Lex::ExpE | Lex::ExpSign | Lex::ExpDigits, b'0'..=b'9') => Some(Lex::ExpDigits),
                            (Lex::ExpDigits, _) => None,
                            // Sign, Mantissa, ExpE, ExpSign followed by anything else.
                            _ => Some(Lex::Recovery),
                        };
                        match next {
                            Some(Lex::Recovery) => {
                                // Invalid: the offending byte is part of the stray token.
                                self.pos = i + 1;
                                return Some(self.stray(i + 1));
                            }
                            Some(s) => {
                                self.state = s;
                                i += 1;
                                if self.token_too_long(i) {
                                    self.pos = i;
                                    return Some(self.cut_token());
                                }
                            }
                            None => {
                                // The token ended before `b`, which is lexed again in Start.
                                self.state = Lex::Start;
                                let start = self.tok_start;
                                if let Some(out) = self.complete(Tok::Other, start, i) {
                                    self.pos = i;
                                    return Some(out);
                                }
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Returns the length of the `"` string token at the start of `bytes` when it has no
/// backslash or byte invalid in a string and its closing quote is there; `None` leaves it to
/// the state machine. A function of its own, so that its scan does not burden the registers
/// of the fast path's loop.
#[inline]
fn plain_string_len(bytes: &[u8]) -> Option<usize> {
    // Most strings end within their first sixteen bytes: two word tests (as in
    // `find_special`) decide them without setting up a loop. Fewer than eight bytes (the
    // end of the input) are looked up one by one.
    let word = |at: usize| bytes.get(at..).and_then(<[u8]>::first_chunk::<8>).map(|w| u64::from_le_bytes(*w));
    let by_byte = |at: usize| bytes[at..].iter().position(|&b| !DQ_PLAIN[usize::from(b)]).map(|k| at + k);
    let special = match word(1).map(|w| special_bytes(w, b'"')) {
        Some(0) => match word(9).map(|w| special_bytes(w, b'"')) {
            Some(0) => 17 + find_special(&bytes[17..], b'"')?,
            Some(hits) => 9 + (hits.trailing_zeros() / 8) as usize,
            None => by_byte(9)?,
        },
        Some(hits) => 1 + (hits.trailing_zeros() / 8) as usize,
        None => by_byte(1)?,
    };
    (bytes[special] == b'"').then_some(special + 1)
}

/// Returns the length of the integer token `-?(0|[1-9][0-9]*)` at the start of `bytes` when
/// the byte after it is there and simply ends it, as the number states of
/// [`Framer::scan_inner`] would decide. `None` leaves the decision to them: a fraction or
/// exponent follows, a digit follows a leading zero (an error), a `-` has no digit, or
/// `bytes` ends first.
#[inline]
fn plain_integer_len(bytes: &[u8]) -> Option<usize> {
    let digits = usize::from(bytes.first() == Some(&b'-'));
    let end = digits + bytes.get(digits..)?.iter().position(|b| !b.is_ascii_digit())?;
    let plain =
        end > digits && (bytes[digits] != b'0' || end == digits + 1) && !matches!(bytes[end], b'.' | b'e' | b'E');
    plain.then_some(end)
}

/// Whether `b` ends a run of ordinary content in a string delimited by `quote`: the closing
/// quote, a backslash, a control character (`< 0x20`) or an impossible byte (`0xFE`/`0xFF`).
const fn ends_string_run(b: u8, quote: u8) -> bool {
    b == quote || b == b'\\' || b < 0x20 || b >= 0xFE
}

/// [`ends_string_run`] for `"` strings as a table, for the fast path's short strings (a table
/// lookup per byte costs less than setting up [`find_special`] for a word or two).
static DQ_PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = !ends_string_run(b as u8, b'"');
        b += 1;
    }
    table
};

/// Finds the first byte in `hay` that ends a run of ordinary string content (see
/// [`ends_string_run`]).
///
/// Eight bytes are tested at a time with word-wide arithmetic ("SWAR"), which keeps framing of
/// string-heavy replies such as `query-qmp-schema` far cheaper than decoding them.
#[inline(never)]
fn find_special(hay: &[u8], quote: u8) -> Option<usize> {
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let hits = special_bytes(u64::from_le_bytes(word), quote);
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&b| ends_string_run(b, quote)).map(|p| base + p)
}

/// Marks the bytes of a little-endian `word` for which [`ends_string_run`] holds, with the
/// high bit of each marked byte. Only the lowest mark is exact (a borrow may mark a byte
/// above it), which is all that is needed to find the first such byte.
#[inline]
fn special_bytes(x: u64, quote: u8) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // A zero byte in `v` shows up as a set high bit in `v - LO & !v`.
    let xq = x ^ (LO * u64::from(quote));
    let xb = x ^ (LO * u64::from(b'\\'));
    let xf = !(x | LO); // zero exactly where the byte is 0xFE or 0xFF
    let hits = (xq.wrapping_sub(LO) & !xq)
        | (xb.wrapping_sub(LO) & !xb)
        | (x.wrapping_sub(LO * 0x20) & !x)
        | (xf.wrapping_sub(LO) & !xf);
    hits & HI
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the framer yields for one push, in a compact comparable form.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Out {
        F(&'static str),
        Fb(Vec<u8>),
        E(FrameError),
    }
    use Out::{E, F};

    fn stray(s: &[u8]) -> Out {
        E(FrameError::Stray(s.to_vec()))
    }

    fn run_with(mode: Mode, limits: Limits, chunks: &[&[u8]]) -> (Vec<Out>, Framer) {
        let mut framer = Framer::new(mode, limits);
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk);
            while let Some(r) = framer.next_frame() {
                out.push(match r {
                    Ok(f) => Out::Fb(f.into_bytes()),
                    Err(e) => E(e),
                });
            }
        }
        (out, framer)
    }

    fn normalize(v: Vec<Out>) -> Vec<Out> {
        v.into_iter()
            .map(|o| match o {
                F(s) => Out::Fb(s.as_bytes().to_vec()),
                o => o,
            })
            .collect()
    }

    /// The single check for the framer boundary: `input` pushed at once, and split at every
    /// offset into two pushes, and fed one byte at a time, must all yield `expected`.
    fn check_mode(mode: Mode, input: &[u8], expected: &[Out]) {
        let expected = normalize(expected.to_vec());
        let (whole, _) = run_with(mode, Limits::default(), &[input]);
        assert_eq!(whole, expected, "whole input {:?}", String::from_utf8_lossy(input));
        for cut in 0..=input.len() {
            let (split, _) = run_with(mode, Limits::default(), &[&input[..cut], &input[cut..]]);
            assert_eq!(split, expected, "split at {cut} of {:?}", String::from_utf8_lossy(input));
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let (bytewise, _) = run_with(mode, Limits::default(), &bytes);
        assert_eq!(bytewise, expected, "bytewise {:?}", String::from_utf8_lossy(input));
    }

    fn check(input: &[u8], expected: &[Out]) {
        check_mode(Mode::Server, input, expected);
    }

    #[test]
    fn defaults_are_qemus() {
        let l = Limits::default();
        assert_eq!(l.max_message_bytes, 64 * 1024 * 1024);
        assert_eq!(l.max_depth, 1024);
        assert_eq!(l.max_tokens, 2_097_152);
    }

    #[test]
    fn basic_framing() {
        check(b"{\"execute\": \"qmp_capabilities\"}\n", &[F("{\"execute\": \"qmp_capabilities\"}")]);
        // CRLF, no terminator, whitespace between, several in one push, back to back.
        check(b"{\"a\": 1}\r\n", &[F("{\"a\": 1}")]);
        check(b"{\"a\": 1}", &[F("{\"a\": 1}")]);
        check(b"  \r\n\t {\"a\": 1}  \n\n {\"b\": [2]}", &[F("{\"a\": 1}"), F("{\"b\": [2]}")]);
        check(
            b"{\"execute\": \"query-status\", \"id\": 5}{\"execute\": \"query-status\", \"id\": 6}\n",
            &[F("{\"execute\": \"query-status\", \"id\": 5}"), F("{\"execute\": \"query-status\", \"id\": 6}")],
        );
        // Escaped quotes and braces inside strings do not count.
        check(b"{\"a\": \"}{\\\"]\\\\\"}\n", &[F("{\"a\": \"}{\\\"]\\\\\"}")]);
        // Whitespace only: nothing at all.
        check(b"   \n", &[]);
        check(b"", &[]);
    }

    #[test]
    fn pretty_multi_line_messages() {
        // The layout of transcript 32_pretty (QEMU 10.0.2, pretty=on).
        let greeting = b"{\r\n    \"QMP\": {\r\n        \"version\": {\r\n            \"qemu\": {\r\n                \"micro\": 2,\r\n                \"minor\": 0,\r\n                \"major\": 10\r\n            },\r\n            \"package\": \"Debian 1:10.0.2+ds-2+deb13u1~bpo12+1\"\r\n        },\r\n        \"capabilities\": [\r\n            \"oob\"\r\n        ]\r\n    }\r\n}\r\n";
        let reply = b"{\r\n    \"return\": {\r\n    },\r\n    \"id\": 1\r\n}\r\n";
        let mut input = greeting.to_vec();
        input.extend_from_slice(reply);
        let g = String::from_utf8(greeting[..greeting.len() - 2].to_vec()).unwrap();
        let r = String::from_utf8(reply[..reply.len() - 2].to_vec()).unwrap();
        let expected = vec![Out::Fb(g.clone().into_bytes()), Out::Fb(r.clone().into_bytes())];
        for mode in [Mode::Client, Mode::Server] {
            let (out, _) = run_with(mode, Limits::default(), &[&input]);
            assert_eq!(out, expected);
            for cut in 0..=input.len() {
                let (out, _) = run_with(mode, Limits::default(), &[&input[..cut], &input[cut..]]);
                assert_eq!(out, expected, "cut {cut}");
            }
        }
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v, serde_json::json!({"return": {}, "id": 1}));
    }

    #[test]
    fn top_level_scalars_and_arrays_are_frames() {
        // Transcript 19_21: `[1,2]`, `42`, `"str"`, `null`, `true` each give one frame (the
        // layer above answers "QMP input must be a JSON object").
        check(b"[1,2]\n", &[F("[1,2]")]);
        check(b"42\n", &[F("42")]);
        check(b"\"str\"\n", &[F("\"str\"")]);
        check(b"null\n", &[F("null")]);
        check(b"true\n", &[F("true")]);
        check(b"hello\n", &[F("hello")]);
        check(b"-1.5e+3 0 -0 1.0E9\n", &[F("-1.5e+3"), F("0"), F("-0"), F("1.0E9")]);
        // A number completes at the next non-number byte, a structural one included.
        check(b"42}", &[F("42"), F("}")]);
        check(b"truefalse", &[]);
    }

    #[test]
    fn number_at_end_of_input_is_not_complete() {
        let mut f = Framer::new(Mode::Server, Limits::default());
        f.push(b"42");
        assert!(f.next_frame().is_none());
        assert!(f.is_mid_message());
        f.push(b" ");
        assert_eq!(f.next_frame().unwrap().unwrap().as_bytes(), b"42");
        assert!(!f.is_mid_message());
    }

    #[test]
    fn negative_depth_emits_at_once() {
        check(b"}\n", &[F("}")]);
        check(b"]]", &[F("]"), F("]")]);
        check(b"{\"a\": 1]\n", &[F("{\"a\": 1]")]);
        check(b"[1}", &[F("[1}")]);
        check(b"[1]]", &[F("[1]"), F("]")]);
    }

    /// Every lexical row of transcript 19_21 (identical in QEMU 7.2.22 and 10.0.2). The second
    /// reply QEMU gives comes from the parser and is checked in `qjson`'s tests.
    #[test]
    fn bad_input_rows_of_19_21() {
        // `%d`: stray '%', recovery skips `d`, `}` alone is a frame.
        check(b"{\"execute\": \"query-version\", \"id\": %d}\n", &[stray(b"%"), F("}")]);
        // Invalid UTF-8 0xFF inside a string: the stray token includes it.
        check(b"{\"execute\": \"query-version\", \"id\": \"a\xffb\"}\n", &[stray(b"\"a\xff"), F("}")]);
        // Invalid UTF-8 that the lexer lets through: the parser rejects it.
        check(
            b"{\"execute\": \"query-\xc3(version\"}\n",
            &[Out::Fb(b"{\"execute\": \"query-\xc3(version\"}".to_vec())],
        );
        // A bare 0xFE byte.
        check(b"\xfe\n", &[stray(b"\xfe")]);
        // Overlong C0 80 passes the lexer.
        check(
            b"{\"execute\": \"query-version\", \"id\": \"a\xc0\x80b\"}\n",
            &[Out::Fb(b"{\"execute\": \"query-version\", \"id\": \"a\xc0\x80b\"}".to_vec())],
        );
        // Escapes pass the lexer, validity is the parser's business.
        check(
            b"{\"execute\": \"query-version\", \"id\": \"a\\u0000b\"}\n",
            &[F("{\"execute\": \"query-version\", \"id\": \"a\\u0000b\"}")],
        );
        check(
            b"{\"execute\": \"query-version\", \"id\": \"a\\ud800b\"}\n",
            &[F("{\"execute\": \"query-version\", \"id\": \"a\\ud800b\"}")],
        );
        // Raw TAB inside a string.
        check(b"{\"execute\": \"query-version\", \"id\": \"a\tb\"}\n", &[stray(b"\"a\t"), F("}")]);
        // A bare NUL byte.
        check(b"\x00\n", &[stray(b"\x00")]);
        // A comment: stray '/', then `,` `"id"` `:` `"cm"` `}` are frames of their own.
        check(
            b"{\"execute\": \"query-version\" /* c */, \"id\": \"cm\"}\n",
            &[stray(b"/"), F(","), F("\"id\""), F(":"), F("\"cm\""), F("}")],
        );
        // `True`: stray 'T', recovery skips `rue`.
        check(b"{\"execute\": \"query-version\", \"id\": True}\n", &[stray(b"T"), F("}")]);
        // Leading zeros: stray '00', recovery skips `7`.
        check(b"{\"execute\": \"query-version\", \"id\": 007}\n", &[stray(b"00"), F("}")]);
        // Hex: `0` then keyword `x` then `10`: one frame that the parser rejects.
        check(
            b"{\"execute\": \"query-version\", \"id\": 0x10}\n",
            &[F("{\"execute\": \"query-version\", \"id\": 0x10}")],
        );
        // Numbers QEMU accepts.
        check(
            b"{\"execute\": \"query-version\", \"id\": 1e400}\n",
            &[F("{\"execute\": \"query-version\", \"id\": 1e400}")],
        );
        check(
            b"{\"execute\": \"query-version\", \"id\": 18446744073709551616}\n",
            &[F("{\"execute\": \"query-version\", \"id\": 18446744073709551616}")],
        );
        check(b"{\"execute\": \"query-version\", \"id\": -0}\n", &[F("{\"execute\": \"query-version\", \"id\": -0}")]);
        // Syntax errors are the parser's: the framer yields one frame.
        check(b"{ \"execute\": }\n", &[F("{ \"execute\": }")]);
        check(
            b"{\"execute\": \"query-version\", \"id\": \"tc\",}\n",
            &[F("{\"execute\": \"query-version\", \"id\": \"tc\",}")],
        );
        check(
            b"{\"execute\": \"query-version\", \"execute\": \"query-status\", \"id\": \"dup\"}\n",
            &[F("{\"execute\": \"query-version\", \"execute\": \"query-status\", \"id\": \"dup\"}")],
        );
        // UTF-8 passes.
        check(
            b"{\"execute\": \"query-version\", \"id\": \"h\xc3\xa9llo \xf0\x9f\x98\x80\"}\n",
            &[Out::Fb(b"{\"execute\": \"query-version\", \"id\": \"h\xc3\xa9llo \xf0\x9f\x98\x80\"}".to_vec())],
        );
        // CRLF-terminated and unterminated commands.
        check(
            b"{\"execute\": \"query-version\", \"id\": \"crlf\"}\r\n",
            &[F("{\"execute\": \"query-version\", \"id\": \"crlf\"}")],
        );
        check(
            b"{\"execute\": \"query-version\", \"id\": \"nonl\"}",
            &[F("{\"execute\": \"query-version\", \"id\": \"nonl\"}")],
        );
    }

    #[test]
    fn stray_display_is_qemus_text() {
        // The desc texts of transcript 19_21, after JSON decoding.
        assert_eq!(FrameError::Stray(b"%".to_vec()).to_string(), "JSON parse error, stray '%'");
        assert_eq!(FrameError::Stray(b"\"a\xff".to_vec()).to_string(), "JSON parse error, stray '\"a\u{FFFD}'");
        assert_eq!(FrameError::Stray(b"\xfe".to_vec()).to_string(), "JSON parse error, stray '\u{FFFD}'");
        assert_eq!(FrameError::Stray(b"\x00".to_vec()).to_string(), "JSON parse error, stray ''");
        assert_eq!(FrameError::Stray(b"\"a\t".to_vec()).to_string(), "JSON parse error, stray '\"a\t'");
        assert_eq!(FrameError::Stray(b"00".to_vec()).to_string(), "JSON parse error, stray '00'");
        assert_eq!(FrameError::Stray(b"\"}\n".to_vec()).to_string(), "JSON parse error, stray '\"}\n'");
        assert_eq!(FrameError::TooLarge.to_string(), "JSON token size limit exceeded");
        assert_eq!(FrameError::TooManyTokens.to_string(), "JSON token count limit exceeded");
        assert_eq!(FrameError::TooDeep.to_string(), "JSON nesting depth limit exceeded");
    }

    #[test]
    fn recovery_rules() {
        // Recovery skips printable bytes and TAB, stops at structural and control characters.
        check(b"% abc\t\"x\" [1]", &[stray(b"%"), F("[1]")]);
        check(b"%abc\n42 ", &[stray(b"%"), F("42")]);
        // 0xFF restarts lexing, where it is itself an error.
        check(b"%ab\xff{}", &[stray(b"%"), stray(b"\xff"), F("{}")]);
        // Errors inside numbers consume the offending byte, even a structural one.
        check(b"-}1 ", &[stray(b"-}")]);
        check(b"-}\n1 ", &[stray(b"-}"), F("1")]);
        check(b"1.},2 ", &[stray(b"1.}"), F(","), F("2")]);
        check(b"1e}[2] ", &[stray(b"1e}"), F("[2]")]);
        check(b"1e+x,3 ", &[stray(b"1e+x"), F(","), F("3")]);
        // A lexical error discards the partial message.
        check(b"{\"a\": [1, %]}", &[stray(b"%"), F("]"), F("}")]);
        // Control characters and 0xFE/0xFF in strings; after an escape too.
        check(b"\"a\x01\"", &[stray(b"\"a\x01")]);
        check(b"\"a\\\n\"", &[stray(b"\"a\\\n")]);
        check(b"\"a\xfe\"", &[stray(b"\"a\xfe")]);
        // Upper-case letters never start a token.
        check(b"Null ", &[stray(b"N")]);
    }

    #[test]
    fn single_quotes_server_and_client() {
        // Server: single-quoted strings (transcript 19_21 row `{'execute': ...}` is accepted),
        // unescaped `"` inside them, and `\'` in both kinds.
        check_mode(
            Mode::Server,
            b"{'execute': 'query-version', 'id': 'sq'}\n",
            &[F("{'execute': 'query-version', 'id': 'sq'}")],
        );
        check_mode(Mode::Server, b"['a\"}b', \"c\\'d\", 'e\\'f']", &[F("['a\"}b', \"c\\'d\", 'e\\'f']")]);
        check_mode(Mode::Server, b"\"\\x\" ", &[F("\"\\x\"")]);
        // Client: a single quote is stray input, and so is the escape `\'`.
        check_mode(Mode::Client, b"{'execute': 1}\n", &[stray(b"'"), F(":"), F("1"), F("}")]);
        check_mode(Mode::Client, b"[\"c\\'d\"] [1]", &[stray(b"\"c\\'"), F("]"), F("[1]")]);
        check_mode(
            Mode::Client,
            b"[\"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00E9\"]",
            &[F("[\"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00E9\"]")],
        );
        // Inside a double-quoted string a single quote is ordinary in both modes.
        check_mode(Mode::Client, b"[\"it's\"]", &[F("[\"it's\"]")]);
    }

    fn nested(open: usize, close: usize) -> Vec<u8> {
        let mut v = b"{\"execute\": \"query-version\", \"id\": ".to_vec();
        v.extend(std::iter::repeat_n(b'[', open));
        v.extend(std::iter::repeat_n(b']', close));
        v.extend_from_slice(b"}\n");
        v
    }

    #[test]
    fn deep_nesting_of_transcript_22() {
        // Depth 1024 (the object plus 1023 arrays) is accepted.
        let ok = nested(1023, 1023);
        let (out, _) = run_with(Mode::Server, Limits::default(), &[&ok]);
        assert_eq!(out, vec![Out::Fb(ok[..ok.len() - 1].to_vec())]);

        // Depth 1025: the nesting error, then each of the 1024 `]` and the `}` is a frame of
        // its own that the parser rejects with "expecting value": 1026 replies.
        let bad = nested(1024, 1024);
        let (out, framer) = run_with(Mode::Server, Limits::default(), &[&bad]);
        assert_eq!(out.len(), 1026);
        assert_eq!(out[0], E(FrameError::TooDeep));
        assert!(out[1..1025].iter().all(|o| *o == Out::Fb(b"]".to_vec())));
        assert_eq!(out[1025], Out::Fb(b"}".to_vec()));
        assert!(!framer.is_mid_message());

        // 2000 `[` and 2000 `]`: the error, one 975-deep array, then 1025 lone `]`.
        let mut input = vec![b'['; 2000];
        input.extend(std::iter::repeat_n(b']', 2000));
        input.push(b'\n');
        let (out, _) = run_with(Mode::Server, Limits::default(), &[&input]);
        assert_eq!(out.len(), 1 + 1 + 1025);
        assert_eq!(out[0], E(FrameError::TooDeep));
        let mut deep = vec![b'['; 975];
        deep.extend(std::iter::repeat_n(b']', 975));
        assert_eq!(out[1], Out::Fb(deep));
        assert!(out[2..].iter().all(|o| *o == Out::Fb(b"]".to_vec())));

        // 2000 `[` unclosed: the error, then 975 arrays stay open and swallow the probe.
        let (out, mut framer) = run_with(
            Mode::Server,
            Limits::default(),
            &[&[b'['; 2000], b"\n", b"{\"execute\": \"query-version\", \"id\": \"alive?\"}\n"],
        );
        assert_eq!(out, vec![E(FrameError::TooDeep)]);
        assert!(framer.is_mid_message());
        framer.push(&[b']'; 976]);
        let f = framer.next_frame().unwrap().unwrap();
        assert!(f.as_bytes().starts_with(b"[[[") && f.as_bytes().ends_with(b"]]]"));
        assert_eq!(framer.next_frame().unwrap().unwrap().as_bytes(), b"]");
        assert!(framer.next_frame().is_none());
    }

    #[test]
    fn depth_limit_is_exact_with_small_limits() {
        let limits = Limits { max_depth: 3, ..Limits::default() };
        let (out, _) = run_with(Mode::Server, limits, &[b"[[[1]]]"]);
        assert_eq!(out, vec![Out::Fb(b"[[[1]]]".to_vec())]);
        let (out, _) = run_with(Mode::Server, limits, &[b"[[[[1]]]]"]);
        assert_eq!(normalize(out), normalize(vec![E(FrameError::TooDeep), F("1"), F("]"), F("]"), F("]"), F("]")]));
    }

    #[test]
    fn token_count_limit() {
        // Like transcript 22b with a limit of 8 tokens: `[0,0,0,0` is 8 tokens, the next `,`
        // is the 9th. Afterwards `0` `,` `0` ... `]` come out one by one.
        let limits = Limits { max_tokens: 8, ..Limits::default() };
        let (out, _) = run_with(Mode::Server, limits, &[b"[0,0,0,0,0,0]"]);
        assert_eq!(normalize(out), normalize(vec![E(FrameError::TooManyTokens), F("0"), F(","), F("0"), F("]")]));
        // Exactly at the limit is fine.
        let (out, _) = run_with(Mode::Server, limits, &[b"[0,0,0]"]);
        assert_eq!(normalize(out), normalize(vec![F("[0,0,0]")]));
    }

    #[test]
    fn token_size_limit() {
        // Token bytes of one message must stay below the limit (QEMU: size + len + 1 > max).
        let limits = Limits { max_message_bytes: 10, ..Limits::default() };
        let (out, _) = run_with(Mode::Server, limits, &[b"[\"abcde\"]"]);
        assert_eq!(normalize(out), normalize(vec![F("[\"abcde\"]")]));
        // 10 token bytes: the closing `]` is the token that fails, and is dropped.
        let (out, _) = run_with(Mode::Server, limits, &[b"[\"abcdef\"] "]);
        assert_eq!(out, vec![E(FrameError::TooLarge)]);
        let (out, _) = run_with(Mode::Server, limits, &[b"[\"abcdefg\"]] "]);
        assert_eq!(normalize(out), normalize(vec![E(FrameError::TooLarge), F("]"), F("]")]));
        // Whitespace does not count (as in QEMU) while the raw message fits.
        let (out, _) = run_with(Mode::Server, limits, &[b"[ 1 , 2 ]"]);
        assert_eq!(normalize(out), normalize(vec![F("[ 1 , 2 ]")]));
    }

    #[test]
    fn huge_string_is_cut_like_transcript_23() {
        // QEMU 23_huge_string_100MB scaled down: a string longer than the limit is cut where it
        // crosses it; the rest of the `a`s lexes as a keyword, then `"}\n` is stray.
        let limits = Limits { max_message_bytes: 16, ..Limits::default() };
        let mut input = b"{\"execute\": \"query-version\", \"id\": \"".to_vec();
        input.extend(std::iter::repeat_n(b'a', 40));
        input.extend_from_slice(b"\"}\n");
        let expected = vec![
            // `{` `"execute"` `:` are 11 bytes; `"query-version"` would make 26.
            E(FrameError::TooLarge),
            Out::Fb(b",".to_vec()),
            Out::Fb(b"\"id\"".to_vec()),
            Out::Fb(b":".to_vec()),
            // The string token `"` + 16 `a` is 17 bytes > 16: cut after its 17th byte.
            E(FrameError::TooLarge),
            // 24 `a` remain: they lex as a keyword, which is cut after 17 bytes too.
            E(FrameError::TooLarge),
            Out::Fb(b"aaaaaaa".to_vec()),
            stray(b"\"}\n"),
        ];
        for mode in [Mode::Client, Mode::Server] {
            let (out, _) = run_with(mode, limits, &[&input]);
            assert_eq!(out, expected);
            let bytes: Vec<&[u8]> = input.chunks(3).collect();
            let (out, _) = run_with(mode, limits, &bytes);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn oversized_message_memory_is_bounded() {
        let limits = Limits { max_message_bytes: 1000, ..Limits::default() };
        let mut f = Framer::new(Mode::Client, limits);
        f.push(b"{\"return\": [");
        let mut results = Vec::new();
        for _ in 0..1000 {
            f.push(b"\"aaaaaaaaaaaaaaaa\", ");
            while let Some(r) = f.next_frame() {
                results.push(r.map(Frame::into_bytes));
            }
            assert!(f.buf.len() <= 1000 + 64, "buffer grew to {}", f.buf.len());
        }
        assert_eq!(results[0], Err(FrameError::TooLarge));
        // One oversized string token in many small pushes never holds more than the limit.
        let mut f = Framer::new(Mode::Client, limits);
        f.push(b"\"");
        let mut errors = Vec::new();
        for _ in 0..1000 {
            f.push(b"bbbbbbbbbbbbbbbb");
            while let Some(r) = f.next_frame() {
                errors.push(r.map(Frame::into_bytes));
            }
            assert!(f.buf.len() <= 1000 + 32, "buffer grew to {}", f.buf.len());
        }
        assert_eq!(errors[0], Err(FrameError::TooLarge));
        // Whitespace inside a message is bounded too.
        let mut f = Framer::new(Mode::Client, limits);
        f.push(b"[1,");
        for _ in 0..1000 {
            f.push(&[b' '; 64]);
            assert!(f.next_frame().is_none());
            assert!(f.buf.len() <= 1000 + 128);
        }
        f.push(b"2]");
        assert_eq!(f.next_frame(), Some(Err(FrameError::TooLarge)));
        assert!(!f.is_mid_message());
        f.push(b" [3]");
        assert_eq!(f.next_frame().unwrap().unwrap().as_bytes(), b"[3]");
    }

    #[test]
    fn split_message_is_scanned_once() {
        // A 2 MiB reply arriving in 1 KiB pushes: the scan index is resumable, so this is
        // linear (a rescanning framer would do ~2 * 10^9 byte visits here).
        let mut reply = b"{\"return\": [".to_vec();
        for i in 0..60_000 {
            if i > 0 {
                reply.extend_from_slice(b", ");
            }
            reply.extend_from_slice(b"{\"name\": \"x-some-name\", \"v\": 123}");
        }
        reply.extend_from_slice(b"]}\r\n");
        let mut f = Framer::new(Mode::Client, Limits::default());
        let mut frames = Vec::new();
        for chunk in reply.chunks(1024) {
            f.push(chunk);
            while let Some(r) = f.next_frame() {
                frames.push(r.unwrap());
            }
        }
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].as_bytes(), &reply[..reply.len() - 2]);
        assert_eq!(f.buffered_len(), 0);
    }

    #[test]
    fn mid_message_and_reset() {
        let mut f = Framer::new(Mode::Client, Limits::default());
        assert!(!f.is_mid_message());
        f.push(b"{\"return\": ");
        assert!(f.next_frame().is_none());
        assert!(f.is_mid_message());
        assert_eq!(f.buffered_len(), 11);
        f.reset();
        assert!(!f.is_mid_message());
        assert_eq!(f.buffered_len(), 0);
        f.push(b"{}\r\n");
        assert_eq!(f.next_frame().unwrap().unwrap().as_bytes(), b"{}");
        // A partial string token at top level is mid-message; recovery is not.
        f.push(b"\"abc");
        assert!(f.next_frame().is_none());
        assert!(f.is_mid_message());
        f.reset();
        f.push(b"% junk");
        assert!(matches!(f.next_frame(), Some(Err(FrameError::Stray(_)))));
        assert!(f.next_frame().is_none());
        assert!(!f.is_mid_message());
    }

    /// A small deterministic generator (xorshift), so that every run checks the same inputs.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
            items[self.below(items.len())]
        }
    }

    /// Whitespace, mostly what QEMU writes.
    const WS: &[&[u8]] = &[b"", b"", b" ", b" ", b"\r\n", b"\n", b"\t", b"  \r\n "];

    /// One generated value: mostly what QEMU and clients write, with the odd irregular token
    /// (escapes, single quotes, bad numbers, stray and control bytes, non-ASCII, long runs).
    fn gen_value(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        match rng.below(if depth >= 3 { 4 } else { 7 }) {
            0 => gen_string(rng, out),
            1 => out.extend_from_slice(rng.pick(&[
                b"0",
                b"-0",
                b"7",
                b"42",
                b"-13",
                b"123456789",
                b"3.25",
                b"-0.5",
                b"1e9",
                b"2E-3",
                b"6.0e+2",
                b"01",
                b"-",
                b"1.",
                b"1e",
                b"0e1",
                b"-x",
                b"1.e5",
                b"9" as &[u8],
            ])),
            2 => out.extend_from_slice(rng.pick(&[
                b"true",
                b"false",
                b"null",
                b"running",
                b"nul",
                b"x",
                b"True",
                b"aaaaaaaaaaaaaaaaaaaaaaaa",
            ])),
            3 => out.extend_from_slice(rng.pick(&[
                b"%",
                b"'",
                b"}",
                b"]",
                b",",
                b":",
                b"\xff",
                b"\x00",
                b"\\",
                b"\xc3\xa9",
            ])),
            4 | 5 => {
                out.push(b'{');
                for k in 0..rng.below(4) {
                    if k > 0 || rng.below(8) == 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(rng.pick(WS));
                    gen_string(rng, out);
                    out.extend_from_slice(rng.pick(WS));
                    out.push(b':');
                    out.extend_from_slice(rng.pick(WS));
                    gen_value(rng, depth + 1, out);
                }
                out.extend_from_slice(rng.pick(WS));
                if rng.below(12) > 0 {
                    out.push(b'}');
                }
            }
            _ => {
                out.push(b'[');
                for k in 0..rng.below(4) {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(rng.pick(WS));
                    gen_value(rng, depth + 1, out);
                }
                if rng.below(12) > 0 {
                    out.push(b']');
                }
            }
        }
    }

    fn gen_string(rng: &mut Rng, out: &mut Vec<u8>) {
        let quote = if rng.below(8) == 0 { b'\'' } else { b'"' };
        out.push(quote);
        for _ in 0..rng.below(4) {
            out.extend_from_slice(rng.pick(&[
                b"execute",
                b"query-status",
                b"id",
                b"return",
                b" ",
                b"a}b]",
                b"{[",
                b"h\xc3\xa9llo",
                b"\xf0\x9f\x98\x80",
                b"\\n",
                b"\\\"",
                b"\\\\",
                b"\\u00e9",
                b"\\'",
                b"\\x",
                b"'",
                b"\"",
                b"\x01",
                b"\x7f",
                b"\xfe",
                b"\xff",
                b"\t",
                b"abcdefghijklmnopqrstuvwxyz0123456789",
                b"%",
            ]));
        }
        if rng.below(16) > 0 {
            out.push(quote);
        }
    }

    /// A stream of a few messages, sometimes with a few bytes changed afterwards.
    fn gen_stream(rng: &mut Rng) -> Vec<u8> {
        let mut out = rng.pick(WS).to_vec();
        for _ in 0..1 + rng.below(3) {
            gen_value(rng, 0, &mut out);
            out.extend_from_slice(rng.pick(&[b"", b"\r\n", b"\n", b" ", b"\r\n\r\n"]));
        }
        for _ in 0..rng.below(4).saturating_sub(1) {
            let at = rng.below(out.len() + 1);
            let byte = *b"{}[]\"':, \n\\%-.e0a\x00\xff\xfe".get(rng.below(22)).unwrap_or(&b'x');
            match rng.below(3) {
                0 => out.insert(at, byte),
                _ if at < out.len() => {
                    if rng.below(2) == 0 {
                        out[at] = byte;
                    } else {
                        out.remove(at);
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn gen_limits(rng: &mut Rng) -> Limits {
        Limits { max_message_bytes: rng.below(48), max_depth: rng.below(6), max_tokens: rng.below(24) }
    }

    #[test]
    fn fast_path_matches_state_machine_on_generated_input() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut frames = 0;
        let mut total = 0;
        for _ in 0..600 {
            let input = gen_stream(&mut rng);
            total += input.len();
            let small = gen_limits(&mut rng);
            for mode in [Mode::Client, Mode::Server] {
                for limits in [Limits::default(), small] {
                    let whole = assert_fast_path_matches(mode, limits, &[&input]);
                    frames += whole.iter().filter(|item| item.is_ok()).count();
                    // Split at every byte boundary, one byte at a time, and in random chunks.
                    // Each call compares the paths on its own; with the default limits the
                    // results must not depend on the split either (with small ones they may:
                    // a message's raw size, whitespace included, is checked per call).
                    let mut splits = vec![input.chunks(1).collect::<Vec<_>>()];
                    for cut in 0..=input.len() {
                        splits.push(vec![&input[..cut], &input[cut..]]);
                    }
                    let mut chunks = Vec::new();
                    let mut rest = &input[..];
                    while !rest.is_empty() {
                        let (chunk, tail) = rest.split_at(1 + rng.below(rest.len()).min(rng.below(20)));
                        chunks.push(chunk);
                        rest = tail;
                    }
                    splits.push(chunks);
                    for split in splits {
                        let out = assert_fast_path_matches(mode, limits, &split);
                        if limits == Limits::default() {
                            assert_eq!(out, whole);
                        }
                    }
                }
            }
        }
        // The generator reaches ordinary messages, not only errors.
        assert!(frames > 1000, "only {frames} frames");
        assert!(total > 10_000, "only {total} bytes");
    }

    #[test]
    fn fast_path_matches_state_machine_at_limit_edges() {
        // Every limit from zero to past the message, so that each token in turn is the one
        // that reaches a limit.
        let reply: &[u8] = b"{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n";
        let request: &[u8] = b"{\"execute\":\"query-status\",\"arguments\":{\"a\":[1,[-2,{}]]},\"id\":1}";
        let base = Limits::default();
        for input in [reply, request] {
            for mode in [Mode::Client, Mode::Server] {
                for n in 0..=input.len() + 1 {
                    for limits in [
                        Limits { max_message_bytes: n, ..base },
                        Limits { max_tokens: n, ..base },
                        Limits { max_depth: n.min(6), ..base },
                    ] {
                        assert_fast_path_matches(mode, limits, &[input, input]);
                        for cut in 0..=input.len() {
                            assert_fast_path_matches(mode, limits, &[&input[..cut], &input[cut..], input]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fast_path_takes_ordinary_messages_whole() {
        // The fast path lexes QEMU's reply and a client's request to the end in one call; the
        // state machine only sees what is left (nothing).
        for (mode, input) in [
            (
                Mode::Client,
                &b"{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}"[..],
            ),
            (Mode::Server, &b"{\"execute\":\"query-status\",\"id\":1}"[..]),
        ] {
            let mut framer = Framer::new(mode, Limits::default());
            framer.push(input);
            assert_eq!(framer.scan_plain(), Some(Ok((0, input.len()))));
            assert_eq!(framer.pos, input.len());
        }
    }

    #[test]
    fn find_special_matches_naive_scan() {
        let alphabet = [b'a', b'"', b'\\', 0x1F, 0x20, 0x7F, 0x80, 0xFD, 0xFE, 0xFF, b'\'', 0x00];
        for len in 0..20 {
            for seed in 0..200u32 {
                let hay: Vec<u8> = (0..len)
                    .map(|k| {
                        let r = seed.wrapping_mul(2_654_435_761).rotate_left(k as u32 * 3 + 1);
                        if r % 5 == 0 { alphabet[(r as usize / 7) % alphabet.len()] } else { b'x' }
                    })
                    .collect();
                for quote in [b'"', b'\''] {
                    let naive = hay.iter().position(|&b| b == quote || b == b'\\' || !(0x20..0xFE).contains(&b));
                    if quote == b'"' {
                        let table = hay.iter().position(|&b| !DQ_PLAIN[usize::from(b)]);
                        assert_eq!(table, naive, "{hay:?}");
                    }
                    assert_eq!(find_special(&hay, quote), naive, "{hay:?}");
                }
            }
        }
    }
}
