//! QEMU's JSON dialect: the server side of the wire.
//!
//! A server that wants to be indistinguishable from QEMU must accept what QEMU accepts, reject
//! what it rejects with the same `desc` text, and write its replies byte for byte as QEMU does.
//! This module reimplements, for one frame produced by a [`crate::Framer`] in
//! [`crate::Mode::Server`]:
//!
//! * [`parse_input`]: QEMU's `qobject/json-parser.c` (with the lexer rules of
//!   `qobject/json-lexer.c` for the tokens of the frame): single-quoted strings, the escape
//!   `\'`, `\u0000` and the overlong `\xC0\x80` (both U+0000), rejection of duplicate keys, lone
//!   surrogates, noncharacters and unknown keywords, and QEMU's number typing (`i64`, else
//!   `u64`, else `f64`).
//! * [`write_compact`] and [`write_pretty`]: QEMU's `qobject/json-writer.c`: `", "` and `": "`
//!   separators, ASCII-only output with upper-case `\uXXXX` escapes and surrogate pairs, and
//!   doubles printed with C's `%.17g`.
//!
//! # Deviations from QEMU
//! * A number too large for a double (`1e400`) is `inf` in QEMU, which then writes the bare
//!   token `inf` (invalid JSON). [`serde_json::Value`] cannot hold infinities, so
//!   [`parse_input`] clamps such numbers to `±f64::MAX` (written back as
//!   `1.7976931348623157e+308`): the command still works and the echo stays valid JSON.
//! * QEMU's parser asserts that nothing follows the value; frames from the framer never have
//!   anything after it. For other input [`parse_input`] reports
//!   `JSON parse error, unexpected token after value`.
//! * As a guard for input that did not come through a framer, [`parse_input`] rejects nesting
//!   deeper than [`MAX_PARSE_DEPTH`] with QEMU's `JSON nesting depth limit exceeded`.
//! * Object members are written in the [`serde_json::Map`]'s order (insertion order), where
//!   QEMU writes its hash table's order.

use std::borrow::Cow;

use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// The deepest nesting [`parse_input`] accepts, far above QEMU's streamer limit of 1024, so that
/// deeply nested values can still be dropped without exhausting the stack.
pub const MAX_PARSE_DEPTH: usize = 4096;

const PREFIX: &str = "JSON parse error, ";

/// Token kinds of QEMU's lexer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    Str,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Formats a parser error as QEMU's `parse_error()` does: the message goes through a 1024-byte
/// buffer (so it is cut to 1023 bytes) and gets the `JSON parse error, ` prefix.
fn parse_error(msg: &[u8]) -> String {
    let cut = &msg[..msg.len().min(1023)];
    format!("{PREFIX}{}", String::from_utf8_lossy(cut))
}

fn stray(token: &[u8]) -> String {
    let end = memchr::memchr(0, token).unwrap_or(token.len());
    format!("{PREFIX}stray '{}'", String::from_utf8_lossy(&token[..end]))
}

/// QEMU's lexer in server mode over one frame, producing tokens as the parser asks for them.
///
/// QEMU lexes a whole frame before parsing it, so a lexical error anywhere in the frame wins
/// over any parse error; [`parse_input`] keeps that precedence by lexing the rest of the frame
/// ([`Lexer::rest_error`]) before it reports a parse error.
struct Lexer<'a> {
    input: &'a [u8],
    pos: usize,
    /// A token lexed by [`Lexer::peek`] and not yet taken.
    peeked: Option<Token>,
}

impl<'a> Lexer<'a> {
    fn new(input: &'a [u8]) -> Self {
        Lexer { input, pos: 0, peeked: None }
    }

    /// Takes the next token; `None` at the end of the frame.
    fn next(&mut self) -> Result<Option<Token>, String> {
        match self.peeked.take() {
            Some(token) => Ok(Some(token)),
            None => self.lex(),
        }
    }

    /// The next token, left to be taken.
    fn peek(&mut self) -> Result<Option<Token>, String> {
        if self.peeked.is_none() {
            self.peeked = self.lex()?;
        }
        Ok(self.peeked)
    }

    /// The lexical error in what is left of the frame, if there is one.
    fn rest_error(&mut self) -> Option<String> {
        loop {
            match self.lex() {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(error) => return Some(error),
            }
        }
    }

    /// Lexes the token at the current position, after any whitespace.
    fn lex(&mut self) -> Result<Option<Token>, String> {
        let input = self.input;
        let n = input.len();
        let mut i = self.pos;
        let token = loop {
            if i >= n {
                self.pos = i;
                return Ok(None);
            }
            let start = i;
            let b = input[i];
            i += 1;
            let kind = match b {
                b' ' | b'\t' | b'\r' | b'\n' => continue,
                b'{' => Kind::LCurly,
                b'}' => Kind::RCurly,
                b'[' => Kind::LSquare,
                b']' => Kind::RSquare,
                b':' => Kind::Colon,
                b',' => Kind::Comma,
                b'"' | b'\'' => {
                    loop {
                        let Some(&c) = input.get(i) else {
                            return Err(parse_error(b"premature EOI"));
                        };
                        i += 1;
                        if c == b {
                            break;
                        }
                        if c == b'\\' {
                            let Some(&e) = input.get(i) else {
                                return Err(parse_error(b"premature EOI"));
                            };
                            i += 1;
                            if !(0x20..=0xFD).contains(&e) {
                                return Err(stray(&input[start..i]));
                            }
                        } else if !(0x20..=0xFD).contains(&c) {
                            return Err(stray(&input[start..i]));
                        }
                    }
                    Kind::Str
                }
                b'-' | b'0'..=b'9' => lex_number(input, start, &mut i)?,
                b'a'..=b'z' => {
                    while i < n && input[i].is_ascii_lowercase() {
                        i += 1;
                    }
                    Kind::Keyword
                }
                _ => return Err(stray(&input[start..i])),
            };
            break Token { kind, start, end: i };
        };
        self.pos = i;
        Ok(Some(token))
    }
}

/// Lexes a number starting at `start` (QEMU's number states); `i` is just past its first byte.
fn lex_number(input: &[u8], start: usize, i: &mut usize) -> Result<Kind, String> {
    let digits = |i: &mut usize| {
        let from = *i;
        while *i < input.len() && input[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > from
    };
    // Consumes one byte that QEMU's lexer rejects and reports the token so far.
    let fail = |i: &mut usize| {
        *i = (*i + 1).min(input.len());
        Err(stray(&input[start..*i]))
    };
    let mut first = input[start];
    if first == b'-' {
        match input.get(*i) {
            Some(&c @ b'0'..=b'9') => {
                first = c;
                *i += 1;
            }
            Some(_) => return fail(i),
            None => return Err(parse_error(b"premature EOI")),
        }
    }
    if first == b'0' {
        if input.get(*i).is_some_and(u8::is_ascii_digit) {
            return fail(i);
        }
    } else {
        digits(i);
    }
    let mut kind = Kind::Integer;
    if input.get(*i) == Some(&b'.') {
        *i += 1;
        if !digits(i) {
            return if *i < input.len() { fail(i) } else { Err(parse_error(b"premature EOI")) };
        }
        kind = Kind::Float;
    }
    if matches!(input.get(*i), Some(b'e' | b'E')) {
        *i += 1;
        if matches!(input.get(*i), Some(b'+' | b'-')) {
            *i += 1;
        }
        if !digits(i) {
            return if *i < input.len() { fail(i) } else { Err(parse_error(b"premature EOI")) };
        }
        kind = Kind::Float;
    }
    Ok(kind)
}

/// Reads four hex digits at `at` as QEMU's `cvt4hex()`; `None` if any is not a hex digit.
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let mut cp = 0;
    for k in 0..4 {
        let d = char::from(*bytes.get(at + k)?).to_digit(16)?;
        cp = cp << 4 | d;
    }
    Some(cp)
}

/// QEMU's `is_valid_codepoint()`: rejects surrogates, noncharacters and values beyond U+10FFFF.
fn valid_codepoint(cp: u32) -> Option<char> {
    let nonchar = (0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE;
    if nonchar { None } else { char::from_u32(cp) }
}

/// Decodes one modified-UTF-8 sequence at the start of `s` as QEMU's `mod_utf8_codepoint()`.
/// Returns the character and the sequence length, or `None` for an invalid sequence.
fn mod_utf8_char(s: &[u8]) -> Option<(char, usize)> {
    let b = *s.first()?;
    if b < 0x80 {
        return Some((char::from(b), 1));
    }
    if b >= 0xFE || b & 0x40 == 0 {
        return None;
    }
    let len = (b.leading_ones()) as usize; // 2..=6
    let mut cp = u32::from(b) & (0x7F >> len);
    for k in 1..len {
        let c = *s.get(k)?;
        if c & 0xC0 != 0x80 {
            return None;
        }
        cp = cp << 6 | u32::from(c & 0x3F);
    }
    const MIN: [u32; 5] = [0x80, 0x800, 0x10000, 0x20_0000, 0x400_0000];
    let ch = valid_codepoint(cp)?;
    if cp < MIN[len - 2] && !(cp == 0 && len == 2) {
        return None;
    }
    Some((ch, len))
}

/// Decodes a string token (quotes included) as QEMU's `parse_string()`.
fn parse_string(tok: &[u8]) -> Result<String, String> {
    let quote = tok[0];
    let body = &tok[1..];
    let mut out = String::with_capacity(body.len());
    let mut p = 0;
    while p < body.len() && body[p] != quote {
        if body[p] == b'\\' {
            let beg = p;
            let esc = body.get(p + 1).copied().unwrap_or(0);
            p += 2;
            match esc {
                b'"' => out.push('"'),
                b'\'' => out.push('\''),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let mut cp = hex4(body, p);
                    p += 4;
                    if let Some(hi @ 0xD800..=0xDBFF) = cp {
                        if body.get(p) == Some(&b'\\') && body.get(p + 1) == Some(&b'u') {
                            cp = match hex4(body, p + 2) {
                                Some(lo @ 0xDC00..=0xDFFF) => {
                                    p += 6;
                                    Some(0x10000 + ((hi & 0x3FF) << 10) + (lo & 0x3FF))
                                }
                                _ => None,
                            };
                        }
                    }
                    match cp.and_then(valid_codepoint) {
                        Some(c) => out.push(c),
                        None => {
                            // QEMU prints the escape with "%.*s", which stops at the token's
                            // end (its NUL terminator).
                            let text = &tok[1 + beg..(1 + p).min(tok.len())];
                            let mut msg = text.to_vec();
                            msg.extend_from_slice(b" is not a valid Unicode character");
                            return Err(parse_error(&msg));
                        }
                    }
                }
                _ => return Err(parse_error(b"invalid escape sequence in string")),
            }
        } else {
            match mod_utf8_char(&body[p..]) {
                Some((c, len)) => {
                    out.push(c);
                    p += len;
                }
                None => return Err(parse_error(b"invalid UTF-8 sequence in string")),
            }
        }
    }
    Ok(out)
}

/// The text of a string token (quotes included) that [`parse_string`] would return unchanged:
/// one of plain ASCII without escapes. The lexer has already refused control characters and
/// ended the token at its first unescaped closing quote.
fn plain_string(tok: &[u8]) -> Option<&str> {
    let body = tok.get(1..tok.len().checked_sub(1)?)?;
    if body.iter().all(|&b| b != b'\\' && b != tok[0] && b.is_ascii()) { std::str::from_utf8(body).ok() } else { None }
}

/// Converts a number token as QEMU's `parse_literal()`: an integer becomes `i64` if it fits,
/// else `u64` (non-negative only), else a double; a float token becomes a double.
fn parse_number(text: &str, kind: Kind) -> Value {
    if kind == Kind::Integer {
        if let Ok(v) = text.parse::<i64>() {
            return Value::from(v);
        }
        if let Ok(v) = text.parse::<u64>() {
            return Value::from(v);
        }
    }
    let v: f64 = text.parse().unwrap_or(0.0);
    let v = if v.is_infinite() { f64::MAX.copysign(v) } else { v };
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// A container being built by the iterative parser.
enum Open<'a> {
    Array(Vec<Value>),
    /// An object whose next value is a member name.
    Key(Members<'a>),
    /// An object whose next value belongs to the given member name.
    Member(Members<'a>, Cow<'a, str>),
}

/// How many members a top-level object keeps in a vector before it moves them into a map.
const FEW_MEMBERS: usize = 16;

/// The members of an object being built.
///
/// A request envelope (the top-level object of [`parse_request`]) has a handful of members
/// that the session only walks, so they stay in a vector, where finding a duplicate name is a
/// few comparisons instead of hashing every name into a map. Every other object, and an
/// envelope with more than [`FEW_MEMBERS`] members, is a [`Map`]. The vector's names borrow
/// from the frame when they are plain ASCII without escapes, which they decode to unchanged.
enum Members<'a> {
    Few(Vec<(Cow<'a, str>, Value)>),
    Map(Map<String, Value>),
}

impl<'a> Members<'a> {
    /// Adds a member; `false` if the object already has one of that name (QEMU's
    /// `duplicate key`), in which case the object is left as it was.
    fn insert(&mut self, key: Cow<'a, str>, value: Value) -> bool {
        match self {
            Members::Few(members) => {
                if members.iter().any(|(name, _)| *name == key) {
                    return false;
                }
                if members.len() < FEW_MEMBERS {
                    members.push((key, value));
                    return true;
                }
                let mut map = Map::with_capacity(members.len() + 1);
                map.extend(members.drain(..).map(|(name, value)| (name.into_owned(), value)));
                map.insert(key.into_owned(), value);
                *self = Members::Map(map);
                true
            }
            // One lookup both finds a duplicate and places the member.
            Members::Map(map) => match map.entry(key.into_owned()) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                    true
                }
                Entry::Occupied(_) => false,
            },
        }
    }
}

/// A frame parsed by [`parse_request`].
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed<'a> {
    /// A top-level object with at most [`FEW_MEMBERS`] members, in the order they came.
    Members(Vec<(Cow<'a, str>, Value)>),
    /// Any other value.
    Value(Value),
}

impl Parsed<'_> {
    /// The value [`parse_input`] gives for the same frame.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Parsed::Members(members) => {
                Value::Object(members.into_iter().map(|(name, value)| (name.into_owned(), value)).collect())
            }
            Parsed::Value(value) => value,
        }
    }
}

/// Parses one frame of client input as QEMU's `json-parser.c` does.
///
/// The frame is one top-level value as produced by a [`crate::Framer`] in
/// [`crate::Mode::Server`]. The parser is iterative, so nesting depth costs heap, not stack.
///
/// # Errors
/// Returns QEMU's exact `desc` text, e.g. `JSON parse error, expecting value`,
/// `JSON parse error, duplicate key`, `JSON parse error, invalid keyword 'tru'`,
/// `JSON parse error, \ud800 is not a valid Unicode character`,
/// `JSON parse error, invalid UTF-8 sequence in string`, `JSON parse error, premature EOI`,
/// `JSON parse error, key is not a string in object`,
/// `JSON parse error, missing : in object pair`, `JSON parse error, expected separator in dict`
/// or `JSON parse error, expected separator in list`; a lexical error in the frame gives the
/// framer's `JSON parse error, stray '...'`.
pub fn parse_input(frame: &[u8]) -> Result<Value, String> {
    match parse_frame(frame, false)? {
        Parsed::Value(value) => Ok(value),
        // Unreachable: only an envelope parse keeps members in a vector.
        members @ Parsed::Members(_) => Ok(members.into_value()),
    }
}

/// Parses one frame of client input as [`parse_input`] does, with the same errors, but keeps
/// the members of a small top-level object (a request envelope) in a vector rather than a
/// map, for a caller that only walks them.
///
/// # Errors
/// As [`parse_input`].
pub(crate) fn parse_request(frame: &[u8]) -> Result<Parsed<'_>, String> {
    parse_frame(frame, true)
}

fn parse_frame(frame: &[u8], envelope: bool) -> Result<Parsed<'_>, String> {
    let mut lexer = Lexer::new(frame);
    match parse_tokens(frame, &mut lexer, envelope) {
        Ok(value) => Ok(value),
        Err(Failure::Lex(error)) => Err(error),
        Err(Failure::Parse(error)) => Err(lexer.rest_error().unwrap_or(error)),
    }
}

/// Why [`parse_tokens`] failed: a lexical error is final, a parse error yields to a lexical
/// error later in the frame.
enum Failure {
    Lex(String),
    Parse(String),
}

/// The parser of [`parse_input`], pulling tokens from `lexer`; with `envelope`, a small
/// top-level object comes back as [`Parsed::Members`].
fn parse_tokens<'a>(frame: &'a [u8], lexer: &mut Lexer<'_>, envelope: bool) -> Result<Parsed<'a>, Failure> {
    let text = |t: &Token| &frame[t.start..t.end];
    let mut stack: Vec<Open<'a>> = Vec::new();
    // A member name of the envelope that needs no decoding, taken from the frame as it is
    // instead of as a `Value::String` (which then stands in as `Null`).
    let mut plain_key: Option<&'a str> = None;
    let premature = || Failure::Parse(parse_error(b"premature EOI"));
    let failed = |msg: &[u8]| Failure::Parse(parse_error(msg));
    // The top-level value is complete: nothing may follow it.
    let end = |lexer: &mut Lexer<'_>| match lexer.next().map_err(Failure::Lex)? {
        Some(_) => Err(failed(b"unexpected token after value")),
        None => Ok(()),
    };
    'value: loop {
        // parse_value()
        let Some(tok) = lexer.next().map_err(Failure::Lex)? else {
            return Err(premature());
        };
        let mut value = match tok.kind {
            Kind::LCurly | Kind::LSquare => {
                let peek = lexer.peek().map_err(Failure::Lex)?.ok_or_else(premature)?;
                if stack.len() >= MAX_PARSE_DEPTH {
                    return Err(Failure::Parse("JSON nesting depth limit exceeded".to_string()));
                }
                if tok.kind == Kind::LCurly {
                    if peek.kind == Kind::RCurly {
                        lexer.peeked = None;
                        Value::Object(Map::new())
                    } else {
                        let members = if envelope && stack.is_empty() {
                            Members::Few(Vec::new())
                        } else {
                            Members::Map(Map::new())
                        };
                        stack.push(Open::Key(members));
                        continue 'value;
                    }
                } else if peek.kind == Kind::RSquare {
                    lexer.peeked = None;
                    Value::Array(Vec::new())
                } else {
                    stack.push(Open::Array(Vec::new()));
                    continue 'value;
                }
            }
            Kind::Str => {
                let plain = match stack.last() {
                    Some(Open::Key(Members::Few(_))) => plain_string(text(&tok)),
                    _ => None,
                };
                match plain {
                    Some(key) => {
                        plain_key = Some(key);
                        Value::Null
                    }
                    None => Value::String(parse_string(text(&tok)).map_err(Failure::Parse)?),
                }
            }
            // Number tokens are ASCII by construction.
            Kind::Integer | Kind::Float => parse_number(&String::from_utf8_lossy(text(&tok)), tok.kind),
            Kind::Keyword => match text(&tok) {
                b"true" => Value::Bool(true),
                b"false" => Value::Bool(false),
                b"null" => Value::Null,
                word => {
                    let mut msg = b"invalid keyword '".to_vec();
                    msg.extend_from_slice(word);
                    msg.push(b'\'');
                    return Err(failed(&msg));
                }
            },
            _ => return Err(failed(b"expecting value")),
        };
        // A value is complete: hand it to the containers it closes.
        loop {
            let Some(open) = stack.pop() else {
                end(lexer)?;
                return Ok(Parsed::Value(value));
            };
            match open {
                Open::Key(map) => {
                    let key = match (plain_key.take(), value) {
                        (Some(key), _) => Cow::Borrowed(key),
                        (None, Value::String(key)) => Cow::Owned(key),
                        (None, _) => return Err(failed(b"key is not a string in object")),
                    };
                    let tok = lexer.next().map_err(Failure::Lex)?.ok_or_else(premature)?;
                    if tok.kind != Kind::Colon {
                        return Err(failed(b"missing : in object pair"));
                    }
                    stack.push(Open::Member(map, key));
                    continue 'value;
                }
                Open::Member(mut members, key) => {
                    if !members.insert(key, value) {
                        return Err(failed(b"duplicate key"));
                    }
                    let tok = lexer.next().map_err(Failure::Lex)?.ok_or_else(premature)?;
                    match tok.kind {
                        Kind::RCurly => match members {
                            Members::Map(map) => value = Value::Object(map),
                            // Only the top-level object of an envelope parse is `Few`.
                            Members::Few(members) => {
                                end(lexer)?;
                                return Ok(Parsed::Members(members));
                            }
                        },
                        Kind::Comma => {
                            stack.push(Open::Key(members));
                            continue 'value;
                        }
                        _ => return Err(failed(b"expected separator in dict")),
                    }
                }
                Open::Array(mut items) => {
                    items.push(value);
                    let tok = lexer.next().map_err(Failure::Lex)?.ok_or_else(premature)?;
                    match tok.kind {
                        Kind::RSquare => value = Value::Array(items),
                        Kind::Comma => {
                            stack.push(Open::Array(items));
                            continue 'value;
                        }
                        _ => return Err(failed(b"expected separator in list")),
                    }
                }
            }
        }
    }
}

/// Writes a value as QEMU's `json-writer.c` does in its default (non-pretty) mode:
/// `{"a": 1, "b": [1, 2]}` with `", "` and `": "` separators, ASCII only, other code points as
/// `\uXXXX` with upper-case hex and surrogate pairs, doubles as C's `%.17g` prints them.
///
/// This is what QEMU sends on a monitor without `pretty=on`; the caller appends `\r\n`.
pub fn write_compact(value: &Value, out: &mut Vec<u8>) {
    Writer { out, pretty: false, depth: 0 }.value(value);
}

/// Writes a value with QEMU's `pretty=on` layout: a newline and 4 spaces per level before
/// every member and element and before each closing bracket (so an empty object nested one
/// level deep is `{\n    }`), with `"\n"` line ends. QEMU's monitor turns every `"\n"` into
/// `"\r\n"`; the caller does the same.
pub fn write_pretty(value: &Value, out: &mut Vec<u8>) {
    Writer { out, pretty: true, depth: 0 }.value(value);
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    pretty: bool,
    depth: usize,
}

impl Writer<'_> {
    fn newline(&mut self) {
        if self.pretty {
            self.out.push(b'\n');
            self.out.resize(self.out.len() + self.depth * 4, b' ');
        }
    }

    fn separator(&mut self, first: bool) {
        if first {
            self.newline();
        } else {
            self.out.push(b',');
            if self.pretty {
                self.newline();
            } else {
                self.out.push(b' ');
            }
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Number(n) => write_number(n, self.out),
            Value::String(s) => write_string(s, self.out),
            Value::Array(items) => {
                self.out.push(b'[');
                self.depth += 1;
                for (k, item) in items.iter().enumerate() {
                    self.separator(k == 0);
                    self.value(item);
                }
                self.depth -= 1;
                self.newline();
                self.out.push(b']');
            }
            Value::Object(map) => {
                self.out.push(b'{');
                self.depth += 1;
                for (k, (key, item)) in map.iter().enumerate() {
                    self.separator(k == 0);
                    write_string(key, self.out);
                    self.out.extend_from_slice(b": ");
                    self.value(item);
                }
                self.depth -= 1;
                self.newline();
                self.out.push(b'}');
            }
        }
    }
}

fn write_number(n: &Number, out: &mut Vec<u8>) {
    // Integers go straight into `out` in plain decimal, as QEMU prints them, without a
    // String on the way; writing to a Vec cannot fail.
    if let Some(v) = n.as_u64() {
        let _ = serde_json::to_writer(&mut *out, &v);
    } else if let Some(v) = n.as_i64() {
        let _ = serde_json::to_writer(&mut *out, &v);
    } else if let Some(v) = n.as_f64() {
        out.extend_from_slice(format_g17(v).as_bytes());
    }
}

/// Formats a double as C's `printf("%.17g")`: 17 significant digits, trailing zeros removed,
/// exponent notation when the exponent is below -4 or at least 17.
pub fn format_g17(v: f64) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan".into() } else { "nan".into() };
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf".into() } else { "inf".into() };
    }
    // Rust's `{:.16e}` rounds exactly to 17 significant digits: "d.dddddddddddddddde<exp>".
    let sci = format!("{v:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut s = String::from(sign);
    if (-4..17).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                s.push_str(digits);
                s.extend(std::iter::repeat_n('0', int_len - digits.len()));
            } else {
                s.push_str(&digits[..int_len]);
                s.push('.');
                s.push_str(&digits[int_len..]);
            }
        } else {
            s.push_str("0.");
            s.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            s.push_str(digits);
        }
    } else {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    s
}

/// Writes a string as QEMU's `quoted_str()`: ASCII only, upper-case `\uXXXX`, surrogate pairs.
fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let u = |out: &mut Vec<u8>, cp: u32| {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[(cp >> shift & 0xF) as usize]);
        }
    };
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let esc: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\u{8}' => b"\\b",
            '\u{c}' => b"\\f",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            ' '..='~' => continue,
            _ => b"",
        };
        out.extend_from_slice(&bytes[plain..i]);
        plain = i + c.len_utf8();
        if !esc.is_empty() {
            out.extend_from_slice(esc);
        } else {
            let cp = u32::from(c);
            if cp > 0xFFFF {
                u(out, 0xD800 + ((cp - 0x10000) >> 10));
                u(out, 0xDC00 + ((cp - 0x10000) & 0x3FF));
            } else {
                u(out, cp);
            }
        }
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer::{Framer, Limits, Mode};
    use serde_json::json;

    /// The single check for the parser boundary: `input` parses to `expected` (a JSON value
    /// written in serde_json syntax) or fails with exactly the `Err` text.
    /// The envelope parse of the session must agree with it on every input.
    fn check(input: &[u8], expected: Result<Value, &str>) {
        let expected = expected.map_err(str::to_string);
        let got = parse_input(input);
        assert_eq!(got, expected, "input {:?}", String::from_utf8_lossy(input));
        let request = parse_request(input).map(Parsed::into_value);
        assert_eq!(request, expected, "envelope parse of {:?}", String::from_utf8_lossy(input));
    }

    /// The single check for the writer boundary: compact output of `value` is `expected`.
    fn check_write(value: &Value, expected: &str) {
        let mut out = Vec::new();
        write_compact(value, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    /// What QEMU replies to one line of input: a frame's parse result or a framer error.
    fn replies(input: &[u8]) -> Vec<Result<Value, String>> {
        let mut f = Framer::new(Mode::Server, Limits::default());
        f.push(input);
        let mut out = Vec::new();
        while let Some(r) = f.next_frame() {
            out.push(match r {
                Ok(frame) => parse_input(frame.as_bytes()),
                Err(e) => Err(e.to_string()),
            });
        }
        out
    }

    /// The check for the full input path (framer + parser): the `desc` texts or values QEMU
    /// gives for one line, in order.
    fn check_replies(input: &[u8], expected: &[Result<Value, &str>]) {
        let expected: Vec<Result<Value, String>> =
            expected.iter().cloned().map(|r| r.map_err(str::to_string)).collect();
        assert_eq!(replies(input), expected, "input {:?}", String::from_utf8_lossy(input));
    }

    fn ev() -> Result<Value, &'static str> {
        Err("JSON parse error, expecting value")
    }

    #[test]
    fn rows_of_19_21_bad_input() {
        // Every row of transcript 19_21 (QEMU 7.2.22 and 10.0.2 reply identically).
        check_replies(b"{ \"execute\": }\n", &[ev()]);
        check_replies(b"[1,2]\n", &[Ok(json!([1, 2]))]);
        check_replies(b"42\n", &[Ok(json!(42))]);
        check_replies(b"\"str\"\n", &[Ok(json!("str"))]);
        check_replies(b"null\n", &[Ok(json!(null))]);
        check_replies(b"true\n", &[Ok(json!(true))]);
        check_replies(b"{}\n", &[Ok(json!({}))]);
        check_replies(b"{\"execute\": 1}\n", &[Ok(json!({"execute": 1}))]);
        check_replies(
            b"{\"execute\": \"query-version\", \"arguments\": []}\n",
            &[Ok(json!({"execute": "query-version", "arguments": []}))],
        );
        check_replies(
            b"{\"execute\": \"query-version\", \"execute\": \"query-status\", \"id\": \"dup\"}\n",
            &[Err("JSON parse error, duplicate key")],
        );
        check_replies(
            b"{'execute': 'query-version', 'id': 'sq'}\n",
            &[Ok(json!({"execute": "query-version", "id": "sq"}))],
        );
        check_replies(b"{\"execute\": \"query-version\", \"id\": %d}\n", &[Err("JSON parse error, stray '%'"), ev()]);
        check_replies(b"hello\n", &[Err("JSON parse error, invalid keyword 'hello'")]);
        check_replies(b"}\n", &[ev()]);
        check_replies(b"{\"execute\": \"query-version\", \"id\": \"tc\",}\n", &[ev()]);
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": \"a\xffb\"}\n",
            &[Err("JSON parse error, stray '\"a\u{FFFD}'"), ev()],
        );
        check_replies(
            b"{\"execute\": \"query-\xc3(version\"}\n",
            &[Err("JSON parse error, invalid UTF-8 sequence in string")],
        );
        check_replies(b"\xfe\n", &[Err("JSON parse error, stray '\u{FFFD}'")]);
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": \"a\xc0\x80b\"}\n",
            &[Ok(json!({"execute": "query-version", "id": "a\u{0}b"}))],
        );
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": \"a\\u0000b\"}\n",
            &[Ok(json!({"execute": "query-version", "id": "a\u{0}b"}))],
        );
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": \"a\\ud800b\"}\n",
            &[Err("JSON parse error, \\ud800 is not a valid Unicode character")],
        );
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": \"a\tb\"}\n",
            &[Err("JSON parse error, stray '\"a\t'"), ev()],
        );
        check_replies(b"\x00\n", &[Err("JSON parse error, stray ''")]);
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": \"h\xc3\xa9llo \xf0\x9f\x98\x80\"}\n",
            &[Ok(json!({"execute": "query-version", "id": "h\u{e9}llo \u{1F600}"}))],
        );
        // The comment row: 6 replies; frames `"id"` and `"cm"` are strings (the layer above
        // answers "QMP input must be a JSON object" for them).
        check_replies(
            b"{\"execute\": \"query-version\" /* c */, \"id\": \"cm\"}\n",
            &[Err("JSON parse error, stray '/'"), ev(), Ok(json!("id")), ev(), Ok(json!("cm")), ev()],
        );
        check_replies(b"{\"execute\": \"query-version\", \"id\": True}\n", &[Err("JSON parse error, stray 'T'"), ev()]);
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": 1e400}\n",
            &[Ok(json!({"execute": "query-version", "id": f64::MAX}))],
        );
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": 18446744073709551616}\n",
            &[Ok(json!({"execute": "query-version", "id": 18446744073709551616.0}))],
        );
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": -0}\n",
            &[Ok(json!({"execute": "query-version", "id": 0}))],
        );
        check_replies(b"{\"execute\": \"query-version\", \"id\": 007}\n", &[Err("JSON parse error, stray '00'"), ev()]);
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": 0x10}\n",
            &[Err("JSON parse error, expected separator in dict")],
        );
        check_replies(b"   \n", &[]);
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": \"crlf\"}\r\n",
            &[Ok(json!({"execute": "query-version", "id": "crlf"}))],
        );
        check_replies(
            b"{\"execute\": \"query-version\", \"id\": \"nonl\"}",
            &[Ok(json!({"execute": "query-version", "id": "nonl"}))],
        );
    }

    #[test]
    fn deep_nesting_replies_of_transcript_22() {
        let mut input = b"{\"execute\": \"query-version\", \"id\": ".to_vec();
        input.extend(std::iter::repeat_n(b'[', 1023));
        input.extend(std::iter::repeat_n(b']', 1023));
        input.extend_from_slice(b"}\n");
        let out = replies(&input);
        assert_eq!(out.len(), 1);
        let mut id = json!([]);
        for _ in 0..1022 {
            id = json!([id]);
        }
        assert_eq!(out[0], Ok(json!({"execute": "query-version", "id": id})));
        // Echoed as QEMU does (2,161 bytes of nested id in the transcript's reply).
        let mut echo = Vec::new();
        write_compact(&out[0].as_ref().unwrap()["id"], &mut echo);
        assert_eq!(echo.len(), 1023 * 2);

        let mut input = b"{\"execute\": \"query-version\", \"id\": ".to_vec();
        input.extend(std::iter::repeat_n(b'[', 1024));
        input.extend(std::iter::repeat_n(b']', 1024));
        input.extend_from_slice(b"}\n");
        let out = replies(&input);
        assert_eq!(out.len(), 1026);
        assert_eq!(out[0], Err("JSON nesting depth limit exceeded".to_string()));
        assert!(out[1..].iter().all(|r| *r == Err("JSON parse error, expecting value".into())));
    }

    #[test]
    fn parser_error_texts() {
        check(b"", Err("JSON parse error, premature EOI"));
        check(b"{", Err("JSON parse error, premature EOI"));
        check(b"[", Err("JSON parse error, premature EOI"));
        check(b"[1", Err("JSON parse error, premature EOI"));
        check(b"{\"a\"", Err("JSON parse error, premature EOI"));
        check(b"{\"a\": 1", Err("JSON parse error, premature EOI"));
        check(b"{\"a\": 1,", Err("JSON parse error, premature EOI"));
        check(b"{1: 2}", Err("JSON parse error, key is not a string in object"));
        check(b"{[1, 2]: 2}", Err("JSON parse error, key is not a string in object"));
        check(b"{[1, ]: 2}", Err("JSON parse error, expecting value"));
        check(b"{\"a\" 1}", Err("JSON parse error, missing : in object pair"));
        check(b"{\"a\": }", Err("JSON parse error, expecting value"));
        check(b"{\"a\": 1 \"b\": 2}", Err("JSON parse error, expected separator in dict"));
        check(b"{\"a\": 1]", Err("JSON parse error, expected separator in dict"));
        check(b"[1 2]", Err("JSON parse error, expected separator in list"));
        check(b"[1}", Err("JSON parse error, expected separator in list"));
        check(b"[1,]", Err("JSON parse error, expecting value"));
        check(b"[,]", Err("JSON parse error, expecting value"));
        check(b"]", Err("JSON parse error, expecting value"));
        check(b":", Err("JSON parse error, expecting value"));
        check(b"tru", Err("JSON parse error, invalid keyword 'tru'"));
        check(b"[nul]", Err("JSON parse error, invalid keyword 'nul'"));
        check(b"\"\\x\"", Err("JSON parse error, invalid escape sequence in string"));
        check(b"\"\\udc00\"", Err("JSON parse error, \\udc00 is not a valid Unicode character"));
        check(b"\"\\ud800\\u0041\"", Err("JSON parse error, \\ud800 is not a valid Unicode character"));
        check(b"\"\\u12g4\"", Err("JSON parse error, \\u12g4 is not a valid Unicode character"));
        check(b"\"\\ufffe\"", Err("JSON parse error, \\ufffe is not a valid Unicode character"));
        check(b"\"\\ufdd0\"", Err("JSON parse error, \\ufdd0 is not a valid Unicode character"));
        check(b"\"\xef\xbf\xbe\"", Err("JSON parse error, invalid UTF-8 sequence in string"));
        check(b"\"\xed\xa0\x80\"", Err("JSON parse error, invalid UTF-8 sequence in string"));
        check(b"\"\xe0\x80\x80\"", Err("JSON parse error, invalid UTF-8 sequence in string"));
        check(b"\"\x80\"", Err("JSON parse error, invalid UTF-8 sequence in string"));
        check(b"\"\xf4\x90\x80\x80\"", Err("JSON parse error, invalid UTF-8 sequence in string"));
        // The first error wins: the inner one, not the enclosing "expecting value".
        check(b"[1, [2, xyz]]", Err("JSON parse error, invalid keyword 'xyz'"));
        // Keywords are cut as QEMU's 1024-byte message buffer cuts them.
        let long = vec![b'a'; 3000];
        let msg = parse_input(&long).unwrap_err();
        assert_eq!(msg.len(), "JSON parse error, ".len() + 1023);
        assert!(msg.starts_with("JSON parse error, invalid keyword 'aaaa"));
        // Lexical errors in frames that did not come from a framer.
        check(b"[1, %]", Err("JSON parse error, stray '%'"));
        check(b"[1] [2]", Err("JSON parse error, unexpected token after value"));
        // QEMU lexes the whole frame before parsing it, so a lexical error anywhere wins over
        // a parse error before it, and over the value being complete.
        check(b"{\"a\" 1, %}", Err("JSON parse error, stray '%'"));
        check(b"[1 2 \"\x01\"]", Err("JSON parse error, stray '\"\u{1}'"));
        check(b"[xyz, \"ab", Err("JSON parse error, premature EOI"));
        check(b"[1] [2] %", Err("JSON parse error, stray '%'"));
        check(b"[1] %", Err("JSON parse error, stray '%'"));
        check(b"[1, [2, %]", Err("JSON parse error, stray '%'"));
    }

    #[test]
    fn envelope_parse_agrees_with_parse_input() {
        // Duplicate keys at every depth, also past the point where a top-level object moves
        // its members into a map, and keys spelt differently that decode to the same name.
        check(b"{\"id\": 1, \"id\": 2}", Err("JSON parse error, duplicate key"));
        check(b"{'id': 1, \"i\\u0064\": 2}", Err("JSON parse error, duplicate key"));
        check(b"{\"a\": {\"b\": 1, \"b\": 2}}", Err("JSON parse error, duplicate key"));
        check(b"{\"a\": [{\"b\": {\"c\": 1, 'c': 2}}]}", Err("JSON parse error, duplicate key"));
        check(b"[{\"b\": 1, \"b\": 2}]", Err("JSON parse error, duplicate key"));
        // A lexical error after the duplicate still wins, as in QEMU.
        check(b"{\"id\": 1, \"id\": 2, %}", Err("JSON parse error, stray '%'"));
        check(b"{\"a\": 1, \"a\": 2 \"b\"}", Err("JSON parse error, duplicate key"));
        check(b"{\"a\": 1} 2", Err("JSON parse error, unexpected token after value"));
        check(b"{\"a\": 1, \"b\": }", Err("JSON parse error, expecting value"));
        check(b"{\"a\": 1, 2: 3}", Err("JSON parse error, key is not a string in object"));
        for count in [FEW_MEMBERS - 1, FEW_MEMBERS, FEW_MEMBERS + 1, 3 * FEW_MEMBERS] {
            let names: Vec<String> = (0..count).map(|i| format!("k{i}")).collect();
            let members: Vec<String> = names.iter().map(|name| format!("\"{name}\": 1")).collect();
            let object = format!("{{{}}}", members.join(", "));
            let expected: Map<String, Value> = names.iter().map(|name| (name.clone(), json!(1))).collect();
            check(object.as_bytes(), Ok(Value::Object(expected)));
            let parsed = parse_request(object.as_bytes()).unwrap();
            assert_eq!(matches!(parsed, Parsed::Members(_)), count <= FEW_MEMBERS, "{count} members");
            for dup in [0, count - 1] {
                let object = format!("{{{}, \"k{dup}\": 2}}", members.join(", "));
                check(object.as_bytes(), Err("JSON parse error, duplicate key"));
                let object = format!("{{\"a\": {{{}, \"k{dup}\": 2}}}}", members.join(", "));
                check(object.as_bytes(), Err("JSON parse error, duplicate key"));
            }
        }
        // QEMU's extensions in an envelope: single quotes, `\'`, big numbers.
        check(
            b"{'execute': 'it\\'s', \"id\": 18446744073709551616, 'arguments': {'n': -9223372036854775809}}",
            Ok(json!({"execute": "it's", "id": 18_446_744_073_709_551_616.0,
                "arguments": {"n": -9_223_372_036_854_775_809.0}})),
        );
        check(b"{}", Ok(json!({})));
        check(b"{\"\": 1, \"\\u0000\": 2}", Ok(json!({"": 1, "\u{0}": 2})));
        // Member order is kept in the vector.
        let parsed = parse_request(b"{\"id\": 1, \"execute\": \"x\"}").unwrap();
        assert_eq!(parsed, Parsed::Members(vec![("id".into(), json!(1)), ("execute".into(), json!("x"))]));
    }

    #[test]
    fn accepted_input() {
        check(b"{\"a\": [1, {\"b\": null}]}", Ok(json!({"a": [1, {"b": null}]})));
        check(
            b"{'a': \"it's\", \"b\": 'say \"hi\"', 'c': 'x\\'y'}",
            Ok(json!({"a": "it's", "b": "say \"hi\"", "c": "x'y"})),
        );
        check(
            b"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"",
            Ok(json!("\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600}")),
        );
        check(b"  [ 1 ,\r\n 2 ]  ", Ok(json!([1, 2])));
        check(b"\"\xc3\xa9\xf0\x9f\x98\x80\"", Ok(json!("\u{e9}\u{1F600}")));
        // Member order is preserved.
        let v = parse_input(b"{\"z\": 1, \"a\": 2}").unwrap();
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["z", "a"]);
    }

    #[test]
    fn numbers() {
        check(b"42", Ok(json!(42)));
        check(b"-7", Ok(json!(-7)));
        check(b"-0", Ok(json!(0)));
        check(b"9223372036854775807", Ok(json!(i64::MAX)));
        check(b"9223372036854775808", Ok(json!(9_223_372_036_854_775_808u64)));
        check(b"18446744073709551615", Ok(json!(u64::MAX)));
        check(b"18446744073709551616", Ok(json!(18_446_744_073_709_551_616.0)));
        check(b"-9223372036854775809", Ok(json!(-9_223_372_036_854_775_809.0)));
        check(b"1.5", Ok(json!(1.5)));
        check(b"1e3", Ok(json!(1000.0)));
        check(b"3.0", Ok(json!(3.0)));
        check(b"-0.0", Ok(json!(-0.0)));
        check(b"1e400", Ok(json!(f64::MAX)));
        check(b"-1e400", Ok(json!(-f64::MAX)));
        check(b"1e-400", Ok(json!(0.0)));
        assert!(parse_input(b"1e3").unwrap().is_f64());
        assert!(parse_input(b"9223372036854775808").unwrap().is_u64());
        assert!(parse_input(b"-0").unwrap().is_i64());
    }

    #[test]
    fn id_echo_of_24_id_types() {
        // Transcript 24_id_types: ids are re-serialized, not copied.
        let echo = |input: &[u8]| {
            let v = parse_input(input).unwrap();
            let mut out = Vec::new();
            write_compact(&v, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(echo(b"\"abc\""), "\"abc\"");
        assert_eq!(echo(b"42"), "42");
        assert_eq!(echo(b"-7"), "-7");
        assert_eq!(echo(b"1.5"), "1.5");
        assert_eq!(echo(b"1e3"), "1000");
        assert_eq!(echo(b"9223372036854775808"), "9223372036854775808");
        assert_eq!(echo(b"{\"a\": [1, {\"b\": null}]}"), "{\"a\": [1, {\"b\": null}]}");
        assert_eq!(echo(b"[1, \"two\", 3.0]"), "[1, \"two\", 3]");
        assert_eq!(echo(b"null"), "null");
        assert_eq!(echo(b"true"), "true");
        assert_eq!(echo(b"false"), "false");
        assert_eq!(echo(b"{}"), "{}");
        assert_eq!(echo(b"\"\""), "\"\"");
        assert_eq!(echo(b"\"q\\\"\\\\\\n\\u00e9\\/\""), "\"q\\\"\\\\\\n\\u00E9/\"");
        // Transcript 19_21.
        assert_eq!(echo(b"\"h\xc3\xa9llo \xf0\x9f\x98\x80\""), "\"h\\u00E9llo \\uD83D\\uDE00\"");
        assert_eq!(echo(b"\"a\xc0\x80b\""), "\"a\\u0000b\"");
        assert_eq!(echo(b"18446744073709551616"), "1.8446744073709552e+19");
        assert_eq!(echo(b"-0"), "0");
        // Our documented choice for 1e400 (QEMU writes the invalid token `inf`).
        assert_eq!(echo(b"1e400"), "1.7976931348623157e+308");
    }

    #[test]
    fn writer_compact() {
        check_write(&json!({"return": {}, "id": 1}), "{\"return\": {}, \"id\": 1}");
        check_write(&json!([]), "[]");
        check_write(
            &json!({"return": {"status": "running", "singlestep": false, "running": true}}),
            "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}",
        );
        check_write(&json!("\u{1}\u{1f}\u{7f}\u{80}\u{ffff}/'"), "\"\\u0001\\u001F\\u007F\\u0080\\uFFFF/'\"");
        check_write(&json!("\"\\\u{8}\u{c}\n\r\t"), "\"\\\"\\\\\\b\\f\\n\\r\\t\"");
        check_write(&json!("VM status: running\r\n"), "\"VM status: running\\r\\n\"");
        check_write(&json!(i64::MIN), "-9223372036854775808");
        check_write(&json!(u64::MAX), "18446744073709551615");
    }

    #[test]
    fn doubles_as_printf_g17() {
        let cases: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (3.0, "3"),
            (1000.0, "1000"),
            (0.1, "0.10000000000000001"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (1e-300, "1e-300"),
            (5e-324, "4.9406564584124654e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-2.5, "-2.5"),
            (1.0 / 3.0, "0.33333333333333331"),
            (1e100, "1e+100"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for &(v, s) in cases {
            assert_eq!(format_g17(v), s, "{v:e}");
        }
    }

    #[test]
    fn writer_pretty_of_32_pretty() {
        // Transcript 32_pretty (QEMU 10.0.2), with CRLF turned back into LF.
        let greeting = json!({"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10},
            "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "capabilities": ["oob"]}});
        let expected = "{\n    \"QMP\": {\n        \"version\": {\n            \"qemu\": {\n                \"micro\": 2,\n                \"minor\": 0,\n                \"major\": 10\n            },\n            \"package\": \"Debian 1:10.0.2+ds-2+deb13u1~bpo12+1\"\n        },\n        \"capabilities\": [\n            \"oob\"\n        ]\n    }\n}";
        let mut out = Vec::new();
        write_pretty(&greeting, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        let mut out = Vec::new();
        write_pretty(&json!({"return": {}, "id": 1}), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "{\n    \"return\": {\n    },\n    \"id\": 1\n}");
        let mut out = Vec::new();
        write_pretty(&json!({}), &mut out);
        assert_eq!(out, b"{\n}");
        let mut out = Vec::new();
        write_pretty(&json!([[], 1.5, "\u{e9}"]), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "[\n    [\n    ],\n    1.5,\n    \"\\u00E9\"\n]");
        let mut out = Vec::new();
        write_pretty(&json!(42), &mut out);
        assert_eq!(out, b"42");
    }
}
