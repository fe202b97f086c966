//! What a typed line means, with qmp-shell's syntax: `command key=value ...`, a raw JSON
//! object, the shell's own words, and `transaction(` ... `)` over one or several lines.
//! Pure: no IO, so every rule is tested here.

use serde_json::{Map, Value, json};

use crate::kv;

/// What the shell should do with a line.
#[derive(Debug, PartialEq)]
pub(crate) enum Input {
    /// Nothing to send: an empty line, or one line of a transaction being typed.
    Nothing,
    /// Leave the shell.
    Quit,
    /// `help` or `help NAME`.
    Help(Option<String>),
    /// Connect again.
    Reconnect,
    /// A JSON object typed as is, sent as is.
    Raw(Value),
    /// A command with its arguments.
    Execute {
        /// The command name.
        name: String,
        /// Its arguments.
        arguments: Map<String, Value>,
    },
}

/// Reads lines, remembering a transaction that spans several of them.
#[derive(Debug, Default)]
pub(crate) struct LineReader {
    /// The actions of the transaction being typed, when one is.
    actions: Option<Vec<Value>>,
}

impl LineReader {
    /// Whether a transaction is being typed (the prompt says `TRANS> `).
    pub(crate) fn in_transaction(&self) -> bool {
        self.actions.is_some()
    }

    /// Forgets a transaction being typed (Ctrl-C).
    pub(crate) fn cancel_transaction(&mut self) -> bool {
        self.actions.take().is_some()
    }

    /// Reads one line.
    ///
    /// # Errors
    /// A one-line message for a line that breaks the syntax; a transaction being typed
    /// stays open, as in qmp-shell.
    pub(crate) fn read(&mut self, line: &str) -> Result<Input, String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(Input::Nothing);
        }
        if !self.in_transaction() && (line.starts_with('{') || line.starts_with('[')) {
            return match serde_json::from_str::<Value>(line) {
                Ok(value @ Value::Object(_)) => Ok(Input::Raw(value)),
                Ok(_) => Err("a raw message must be a JSON object".to_owned()),
                Err(e) => Err(format!("not valid JSON: {e}")),
            };
        }
        let words = kv::split_words(line).map_err(|e| e.to_string())?;
        let mut words: &[String] = &words;
        if !self.in_transaction() {
            match words[0].as_str() {
                "transaction(" => {
                    self.actions = Some(Vec::new());
                    words = &words[1..];
                    if words.is_empty() {
                        return Ok(Input::Nothing);
                    }
                }
                "quit" | "exit" | "bye" if words.len() == 1 => return Ok(Input::Quit),
                "reconnect" if words.len() == 1 => return Ok(Input::Reconnect),
                "help" | "?" if words.len() <= 2 => return Ok(Input::Help(words.get(1).cloned())),
                name => {
                    let arguments = kv::parse_arguments(&words[1..]).map_err(|e| e.to_string())?;
                    return Ok(Input::Execute { name: name.to_owned(), arguments });
                }
            }
        }
        self.transaction_line(words)
    }

    /// One line inside `transaction(`: `)` alone ends it; `type k=v ...` adds an action, and
    /// ends it too when its last word is `)`.
    fn transaction_line(&mut self, words: &[String]) -> Result<Input, String> {
        if words[0] == ")" {
            if words.len() > 1 {
                return Err("unexpected input after the close of the transaction".to_owned());
            }
            let actions = self.actions.take().unwrap_or_default();
            let mut arguments = Map::new();
            arguments.insert("actions".to_owned(), Value::Array(actions));
            return Ok(Input::Execute { name: "transaction".to_owned(), arguments });
        }
        let (words, last) = match words.split_last() {
            Some((close, rest)) if close == ")" => (rest, true),
            _ => (words, false),
        };
        let data = kv::parse_arguments(&words[1..]).map_err(|e| e.to_string())?;
        self.actions.get_or_insert_with(Vec::new).push(json!({"type": words[0], "data": data}));
        if last { self.transaction_line(&[")".to_owned()]) } else { Ok(Input::Nothing) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execute(name: &str, arguments: Value) -> Input {
        Input::Execute { name: name.to_owned(), arguments: arguments.as_object().unwrap().clone() }
    }

    #[test]
    fn lines_in_a_table() {
        let cases: &[(&str, Input)] = &[
            ("", Input::Nothing),
            ("   ", Input::Nothing),
            ("quit", Input::Quit),
            ("help", Input::Help(None)),
            ("help query-status", Input::Help(Some("query-status".into()))),
            ("reconnect", Input::Reconnect),
            ("query-status", execute("query-status", json!({}))),
            (
                r#"blockdev-add driver=null-co node-name=n0 read-only=true size=1024 x-o={"a": 1}"#,
                execute(
                    "blockdev-add",
                    json!({"driver": "null-co", "node-name": "n0", "read-only": true, "size": 1024, "x-o": {"a": 1}}),
                ),
            ),
            (
                r#"human-monitor-command command-line="info block""#,
                execute("human-monitor-command", json!({"command-line": "info block"})),
            ),
            (r#"{"execute": "query-status", "id": 7}"#, Input::Raw(json!({"execute": "query-status", "id": 7}))),
        ];
        for (line, want) in cases {
            assert_eq!(&LineReader::default().read(line).unwrap(), want, "{line:?}");
        }
        let errors: &[(&str, &str)] = &[
            ("[1]", "a raw message must be a JSON object"),
            ("{oops", "not valid JSON: key must be a string at line 1 column 2"),
            ("stop now", "expected key=value, got \"now\""),
            ("x a=1 a=2", "cannot set \"a\" multiple times"),
            (r#"x s="open"#, "unterminated quote or bracket in \"s=\"open\""),
        ];
        for (line, want) in errors {
            assert_eq!(LineReader::default().read(line).unwrap_err(), *want, "{line:?}");
        }
        assert_eq!(LineReader::default().read("{}").unwrap(), Input::Raw(json!({})));
    }

    #[test]
    fn transactions_over_lines_and_on_one() {
        let mut r = LineReader::default();
        assert_eq!(r.read("transaction(").unwrap(), Input::Nothing);
        assert!(r.in_transaction());
        assert_eq!(r.read("block-dirty-bitmap-add node=n0 name=b0").unwrap(), Input::Nothing);
        assert_eq!(r.read("x a").unwrap_err(), "expected key=value, got \"a\"");
        assert!(r.in_transaction(), "an error keeps the transaction open");
        assert_eq!(r.read("abort").unwrap(), Input::Nothing);
        assert_eq!(
            r.read(")").unwrap(),
            execute(
                "transaction",
                json!({"actions": [
                    {"type": "block-dirty-bitmap-add", "data": {"node": "n0", "name": "b0"}},
                    {"type": "abort", "data": {}},
                ]})
            )
        );
        assert!(!r.in_transaction());

        let one = execute("transaction", json!({"actions": [{"type": "abort", "data": {}}]}));
        assert_eq!(LineReader::default().read("transaction( abort )").unwrap(), one);
        let mut r = LineReader::default();
        assert_eq!(r.read("transaction( abort").unwrap(), Input::Nothing);
        assert_eq!(r.read("abort )").unwrap().to_owned_name(), Some("transaction"));
        let mut r = LineReader::default();
        r.read("transaction(").unwrap();
        assert_eq!(r.read(") x").unwrap_err(), "unexpected input after the close of the transaction");
        assert!(r.cancel_transaction() && !r.in_transaction());
    }

    impl Input {
        fn to_owned_name(&self) -> Option<&str> {
            match self {
                Input::Execute { name, .. } => Some(name),
                _ => None,
            }
        }
    }
}
