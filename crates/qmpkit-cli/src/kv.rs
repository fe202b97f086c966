//! `key=value` command arguments, with qmp-shell's rules.
//!
//! [`parse_arguments`] turns the words after a command name into its JSON `arguments` object.
//! It is a pure function so that `qmp agent`, and later `qmp shell` and `qmp exec`, read
//! arguments the same way. The rules:
//!
//! - Each word is `key=value`, split at the first `=` (the value may contain more `=`).
//! - The value is, in this order: an integer when it reads as a (signed) 64-bit integer;
//!   `true` or `false` (any case) as a boolean; JSON when it starts with `{` or `[`;
//!   otherwise the text as a string (`name=42abc` is the string `"42abc"`; an empty value is
//!   the empty string). A value in double or single quotes is the string inside them, so
//!   `id="42"` is a string and `desc='a b'` can hold spaces, as in qmp-shell.
//! - A dotted key builds nested objects: `a.b=1 a.c=2` is `{"a": {"b": 1, "c": 2}}`. A JSON
//!   object given as a value can be extended the same way (`a={"b":1} a.c=2`), as in qmp-shell.
//! - Errors: a word without `=`; an empty key or key part (`=1`, `a..b=1`); the same key set
//!   twice; a key used both as a value and as an object (`a=1 a.b=2`, or `a.b=2 a=1`); a value
//!   that starts with `{` or `[` but is not valid JSON. (qmp-shell would send that last one as
//!   a string or guess at Python syntax; an error is clearer than a surprising argument.)
//!
//! [`split_words`] cuts a typed line into words the way qmp-shell does: at blanks, except
//! inside quotes. It also keeps a JSON value whole (`o={"a": 1}`), which qmp-shell cuts.

use serde_json::{Map, Value};

/// Why the arguments could not be read. Each displays as one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvError {
    /// A word had no `=`.
    MissingEquals(String),
    /// A key, or a part of a dotted key, was empty.
    EmptyKey(String),
    /// The same key was given twice.
    Duplicate(String),
    /// A key was used both as a value and as an object.
    LeafAndObject(String),
    /// A line ended inside quotes or brackets.
    Unterminated(String),
    /// A value starting with `{` or `[` was not valid JSON.
    BadJson {
        /// The key.
        key: String,
        /// What the JSON parser said.
        reason: String,
    },
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvError::MissingEquals(word) => write!(f, "expected key=value, got \"{word}\""),
            KvError::EmptyKey(word) => write!(f, "empty key in \"{word}\""),
            KvError::Duplicate(key) => write!(f, "cannot set \"{key}\" multiple times"),
            KvError::LeafAndObject(key) => write!(f, "cannot use \"{key}\" as both leaf and non-leaf key"),
            KvError::Unterminated(word) => write!(f, "unterminated quote or bracket in \"{word}\""),
            KvError::BadJson { key, reason } => write!(f, "the value of \"{key}\" is not valid JSON: {reason}"),
        }
    }
}

impl std::error::Error for KvError {}

/// Reads one value by the rules above.
fn parse_value(key: &str, text: &str) -> Result<Value, KvError> {
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        // The JSON reading of a double-quoted string gives `\"` and `\n` their meaning.
        return Ok(Value::String(serde_json::from_str(text).unwrap_or_else(|_| inner.to_owned())));
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')).filter(|_| text.len() >= 2) {
        return Ok(Value::String(inner.replace("\\'", "'")));
    }
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Value::from(n));
    }
    if text.eq_ignore_ascii_case("true") {
        return Ok(Value::Bool(true));
    }
    if text.eq_ignore_ascii_case("false") {
        return Ok(Value::Bool(false));
    }
    if text.starts_with('{') || text.starts_with('[') {
        return serde_json::from_str(text).map_err(|e| KvError::BadJson { key: key.to_owned(), reason: e.to_string() });
    }
    Ok(Value::String(text.to_owned()))
}

/// Builds a command's arguments from `key=value` words.
///
/// # Errors
/// A [`KvError`] for the first word that breaks a rule of the module documentation.
pub(crate) fn parse_arguments<I, S>(words: I) -> Result<Map<String, Value>, KvError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut arguments = Map::new();
    for word in words {
        let word = word.as_ref();
        let (key, text) = word.split_once('=').ok_or_else(|| KvError::MissingEquals(word.to_owned()))?;
        let path: Vec<&str> = key.split('.').collect();
        if path.iter().any(|part| part.is_empty()) {
            return Err(KvError::EmptyKey(word.to_owned()));
        }
        let value = parse_value(key, text)?;
        let (leaf, parents) = path.split_last().ok_or_else(|| KvError::EmptyKey(word.to_owned()))?;
        let mut object = &mut arguments;
        for (depth, part) in parents.iter().enumerate() {
            let entry = object.entry((*part).to_owned()).or_insert_with(|| Value::Object(Map::new()));
            object = match entry {
                Value::Object(inner) => inner,
                _ => return Err(KvError::LeafAndObject(path[..=depth].join("."))),
            };
        }
        match object.get(*leaf) {
            Some(Value::Object(_)) => return Err(KvError::LeafAndObject(key.to_owned())),
            Some(_) => return Err(KvError::Duplicate(key.to_owned())),
            None => {
                object.insert((*leaf).to_owned(), value);
            }
        }
    }
    Ok(arguments)
}

/// Cuts a typed line into words: at blanks outside quotes and outside `{...}`/`[...]`.
/// Quotes stay in the words; [`parse_arguments`] takes them off values.
///
/// # Errors
/// [`KvError::Unterminated`] when the line ends inside quotes or brackets.
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, KvError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut escaped = false;
    for c in line.chars() {
        if let Some(q) = quote {
            word.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => {
                quote = Some(c);
                word.push(c);
            }
            '{' | '[' => {
                depth += 1;
                word.push(c);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                word.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if quote.is_some() || depth > 0 {
        return Err(KvError::Unterminated(word));
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_rules_in_a_table() {
        let ok: &[(&[&str], Value)] = &[
            (&[], json!({})),
            (&["pid=42"], json!({"pid": 42})),
            (&["n=-7", "p=+3"], json!({"n": -7, "p": 3})),
            (&["big=9223372036854775807"], json!({"big": i64::MAX})),
            (&["over=9223372036854775808"], json!({"over": "9223372036854775808"})),
            (&["x=1.5"], json!({"x": "1.5"})),
            (&["a=true", "b=FALSE", "c=True"], json!({"a": true, "b": false, "c": true})),
            (&["s=hello world"], json!({"s": "hello world"})),
            (&["s=42abc"], json!({"s": "42abc"})),
            (&["s="], json!({"s": ""})),
            (&["s=a=b"], json!({"s": "a=b"})),
            (&["s=null"], json!({"s": "null"})),
            (&[r#"o={"a": [1, "x"]}"#], json!({"o": {"a": [1, "x"]}})),
            (&[r#"l=["-c", "exit 3"]"#], json!({"l": ["-c", "exit 3"]})),
            (&["a.b=1", "a.c.d=x"], json!({"a": {"b": 1, "c": {"d": "x"}}})),
            (&[r#"a={"b":1}"#, "a.c=2"], json!({"a": {"b": 1, "c": 2}})),
            (&[r#"id="42""#, "t='a b'", r#"q="say \"hi\"""#], json!({"id": "42", "t": "a b", "q": "say \"hi\""})),
            (&["x=\"", "y='"], json!({"x": "\"", "y": "'"})),
        ];
        for (words, want) in ok {
            assert_eq!(parse_arguments(words.iter()).map(Value::Object), Ok(want.clone()), "{words:?}");
        }
        let errors: &[(&[&str], KvError, &str)] = &[
            (&["pid"], KvError::MissingEquals("pid".into()), "expected key=value, got \"pid\""),
            (&["=1"], KvError::EmptyKey("=1".into()), "empty key in \"=1\""),
            (&["a..b=1"], KvError::EmptyKey("a..b=1".into()), "empty key in \"a..b=1\""),
            (&["a.=1"], KvError::EmptyKey("a.=1".into()), "empty key in \"a.=1\""),
            (&["a=1", "a=2"], KvError::Duplicate("a".into()), "cannot set \"a\" multiple times"),
            (&["a.b=1", "a.b=2"], KvError::Duplicate("a.b".into()), "cannot set \"a.b\" multiple times"),
            (&["a=1", "a.b=2"], KvError::LeafAndObject("a".into()), "cannot use \"a\" as both leaf and non-leaf key"),
            (&["a.b=2", "a=1"], KvError::LeafAndObject("a".into()), "cannot use \"a\" as both leaf and non-leaf key"),
            (
                &["a.b.c=2", "a.b=1"],
                KvError::LeafAndObject("a.b".into()),
                "cannot use \"a.b\" as both leaf and non-leaf key",
            ),
            (
                &["x.y=1", "x.y.z=1"],
                KvError::LeafAndObject("x.y".into()),
                "cannot use \"x.y\" as both leaf and non-leaf key",
            ),
        ];
        for (words, want, text) in errors {
            let got = parse_arguments(words.iter()).unwrap_err();
            assert_eq!(&got, want, "{words:?}");
            assert_eq!(got.to_string(), *text);
        }
        let bad = parse_arguments(["o={oops"]).unwrap_err();
        assert!(matches!(&bad, KvError::BadJson { key, .. } if key == "o"), "{bad:?}");
        assert!(bad.to_string().starts_with("the value of \"o\" is not valid JSON: "));
    }

    #[test]
    fn splitting_lines() {
        let ok: &[(&str, &[&str])] = &[
            ("", &[]),
            ("  query-status  ", &["query-status"]),
            ("a b=1\tc=2", &["a", "b=1", "c=2"]),
            (r#"x s="a b" t='c d'"#, &["x", r#"s="a b""#, "t='c d'"]),
            (r#"x o={"a": [1, 2]} l=[ "p q" ]"#, &["x", r#"o={"a": [1, 2]}"#, r#"l=[ "p q" ]"#]),
            (r#"x s="a \" b""#, &["x", r#"s="a \" b""#]),
            ("transaction( a )", &["transaction(", "a", ")"]),
        ];
        for (line, want) in ok {
            assert_eq!(split_words(line).unwrap(), *want, "{line:?}");
        }
        for bad in [r#"x s="a b"#, "x o={\"a\": 1", "x t='"] {
            let err = split_words(bad).unwrap_err();
            assert!(matches!(err, KvError::Unterminated(_)), "{bad:?}");
            assert!(err.to_string().starts_with("unterminated quote or bracket in "));
        }
    }
}
