//! Per-listener policy: which commands a listener's clients may run, and which events they see.

use glob::Pattern;
use serde::Deserialize;

/// What the clients of one listener may do. The default allows every command and every event.
///
/// A command is allowed when it matches an `allow` pattern (or there is no allow list) and no
/// `deny` pattern; a refused command gets the error QEMU gives for a command that does not
/// exist, so a restricted client cannot tell a hidden command from a missing one.
/// `qmp_capabilities` is always allowed: without it no client could start.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    allow: Option<Vec<Pattern>>,
    deny: Vec<Pattern>,
    events: Option<Vec<Pattern>>,
}

/// A glob pattern in a policy that does not parse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bad pattern {pattern:?} in the proxy policy: {reason}")]
pub struct PolicyError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

fn compile<I, S>(patterns: I) -> Result<Vec<Pattern>, PolicyError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    patterns
        .into_iter()
        .map(|p| {
            Pattern::new(p.as_ref())
                .map_err(|e| PolicyError { pattern: p.as_ref().to_owned(), reason: e.msg.to_owned() })
        })
        .collect()
}

impl Policy {
    /// A policy that allows every command and every event.
    #[must_use]
    pub fn allow_all() -> Self {
        Policy::default()
    }

    /// Allows only the commands matching one of these globs (`*`, `?`, `[...]`), such as
    /// `query-*` for a read-only listener.
    ///
    /// # Errors
    /// [`PolicyError`] when a pattern does not parse.
    pub fn allow<I, S>(mut self, patterns: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.allow = Some(compile(patterns)?);
        Ok(self)
    }

    /// Refuses the commands matching one of these globs, even when an allow pattern matches.
    ///
    /// # Errors
    /// [`PolicyError`] when a pattern does not parse.
    pub fn deny<I, S>(mut self, patterns: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.deny = compile(patterns)?;
        Ok(self)
    }

    /// Passes on only the events whose names match one of these globs.
    ///
    /// # Errors
    /// [`PolicyError`] when a pattern does not parse.
    pub fn events<I, S>(mut self, patterns: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.events = Some(compile(patterns)?);
        Ok(self)
    }

    /// Whether the listener's clients may run this command.
    #[must_use]
    pub fn allows_command(&self, name: &str) -> bool {
        if name == "qmp_capabilities" {
            return true;
        }
        let allowed = self.allow.as_ref().is_none_or(|allow| allow.iter().any(|p| p.matches(name)));
        allowed && !self.deny.iter().any(|p| p.matches(name))
    }

    /// Whether the policy hides anything at all.
    #[must_use]
    pub fn restricts(&self) -> bool {
        self.allow.is_some() || !self.deny.is_empty() || self.events.is_some()
    }

    /// Removes what the policy hides from a `query-commands` or `query-qmp-schema` result, so
    /// that introspection agrees with what the listener's clients may do.
    pub(crate) fn filter_introspection(&self, command: &str, result: &mut serde_json::Value) {
        let Some(entries) = result.as_array_mut() else { return };
        let name = |e: &serde_json::Value| e["name"].as_str().unwrap_or_default().to_owned();
        match command {
            "query-commands" => entries.retain(|e| self.allows_command(&name(e))),
            "query-qmp-schema" => entries.retain(|e| match e["meta-type"].as_str() {
                Some("command") => self.allows_command(&name(e)),
                Some("event") => self.allows_event(&name(e)),
                _ => true,
            }),
            _ => {}
        }
    }

    /// Whether the listener's clients see this event.
    #[must_use]
    pub fn allows_event(&self, name: &str) -> bool {
        self.events.as_ref().is_none_or(|events| events.iter().any(|p| p.matches(name)))
    }
}

/// The contents of a policy file (TOML or JSON): one entry per listener address.
///
/// ```toml
/// [[listener]]
/// address = "/run/vm1/qmp-ro.sock"
/// allow = ["query-*"]
/// deny = ["query-qmp-schema"]
/// events = ["STOP", "RESUME", "JOB_*"]
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The listeners that have a policy; the others allow everything.
    #[serde(default)]
    pub listener: Vec<ListenerPolicy>,
}

/// One listener's entry in a [`PolicyFile`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerPolicy {
    /// The listener's address, exactly as given to `--listen`.
    pub address: String,
    /// Globs of the commands allowed; absent allows all.
    pub allow: Option<Vec<String>>,
    /// Globs of the commands refused.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Globs of the events passed on; absent passes all.
    pub events: Option<Vec<String>>,
}

impl ListenerPolicy {
    /// The policy this entry describes.
    ///
    /// # Errors
    /// [`PolicyError`] when a pattern does not parse.
    pub fn to_policy(&self) -> Result<Policy, PolicyError> {
        let mut policy = Policy::allow_all().deny(&self.deny)?;
        if let Some(allow) = &self.allow {
            policy = policy.allow(allow)?;
        }
        if let Some(events) = &self.events {
            policy = policy.events(events)?;
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_policy() {
        let policy = Policy::allow_all().allow(["query-*"]).unwrap().deny(["query-qmp-schema"]).unwrap();
        assert!(policy.allows_command("query-status"));
        assert!(!policy.allows_command("query-qmp-schema"));
        assert!(!policy.allows_command("stop"));
        assert!(policy.allows_command("qmp_capabilities"));
        assert!(policy.allows_event("STOP"));
        let policy = policy.events(["JOB_*"]).unwrap();
        assert!(policy.allows_event("JOB_STATUS_CHANGE"));
        assert!(!policy.allows_event("STOP"));
        let mut commands = serde_json::json!([{"name": "stop"}, {"name": "query-kvm"}]);
        policy.filter_introspection("query-commands", &mut commands);
        assert_eq!(commands, serde_json::json!([{"name": "query-kvm"}]));
        let mut schema = serde_json::json!([
            {"name": "stop", "meta-type": "command"},
            {"name": "STOP", "meta-type": "event"},
            {"name": "JOB_STATUS_CHANGE", "meta-type": "event"},
            {"name": "int", "meta-type": "builtin"},
        ]);
        policy.filter_introspection("query-qmp-schema", &mut schema);
        let names: Vec<_> = schema.as_array().unwrap().iter().map(|e| e["name"].clone()).collect();
        assert_eq!(names, ["JOB_STATUS_CHANGE", "int"]);
    }

    #[test]
    fn bad_patterns_are_errors() {
        let err = Policy::allow_all().allow(["query-[abc"]).unwrap_err();
        assert_eq!(err.pattern, "query-[abc");
    }

    #[test]
    fn file_entries_parse_from_json() {
        let file: PolicyFile =
            serde_json::from_str(r#"{"listener": [{"address": "ro.sock", "allow": ["query-*"], "events": []}]}"#)
                .unwrap();
        let policy = file.listener[0].to_policy().unwrap();
        assert!(!policy.allows_command("quit"));
        assert!(!policy.allows_event("STOP"));
        assert!(serde_json::from_str::<PolicyFile>(r#"{"listener": [{"address": "a", "alow": []}]}"#).is_err());
    }
}
