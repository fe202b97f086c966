//! Version profiles: what differs between the QEMU versions the simulator imitates.
//!
//! A profile holds the version numbers, QEMU's own `query-qmp-schema` reply for that version
//! (kept as data in this crate, from Debian's builds), and the few behaviours that changed
//! between versions and that the schema alone does not tell (the machine type's name, the
//! package); the rest, such as `query-status` losing `singlestep` in 8.2, follows from the schema.

use std::fmt;

use crate::SimError;

/// A QEMU version the simulator can imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The major version.
    pub major: u64,
    /// The minor version.
    pub minor: u64,
    /// The micro version of the build whose schema the profile carries.
    pub micro: u64,
    /// The `-M pc` machine type's QOM type name.
    pub machine_type: &'static str,
    /// `migrate-pause`'s error outside postcopy, reworded in QEMU 8.
    pub(crate) migrate_pause_error: &'static str,
    schema: &'static str,
}

/// QEMU 7.2 (Debian 12's 7.2.22).
pub const QEMU_7_2: Profile = Profile {
    major: 7,
    minor: 2,
    micro: 22,
    machine_type: "pc-i440fx-7.2-machine",
    migrate_pause_error: "migrate-pause is currently only supported during postcopy-active state",
    schema: include_str!("../data/qmp-schema-7.2.22.json"),
};

/// QEMU 10.0 (Debian's 10.0.2 backport), the default.
pub const QEMU_10_0: Profile = Profile {
    major: 10,
    minor: 0,
    micro: 2,
    machine_type: "pc-i440fx-10.0-machine",
    migrate_pause_error: "migrate-pause is currently only supported during postcopy-active or postcopy-recover state",
    schema: include_str!("../data/qmp-schema-10.0.2.json"),
};

/// Every profile, oldest first.
pub const PROFILES: [Profile; 2] = [QEMU_7_2, QEMU_10_0];

impl Default for Profile {
    fn default() -> Self {
        QEMU_10_0
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

impl Profile {
    /// The profile for a version written `MAJOR.MINOR` or `MAJOR.MINOR.MICRO`. A micro
    /// version other than the profile's own is kept for the greeting and `query-version`;
    /// behaviour follows the `MAJOR.MINOR` profile.
    ///
    /// # Errors
    /// [`SimError::UnknownVersion`] when the text is not a version or no profile has that
    /// major and minor version.
    pub fn for_version(text: &str) -> Result<Profile, SimError> {
        let unknown = || SimError::UnknownVersion {
            asked: text.to_owned(),
            known: PROFILES.iter().map(|p| format!("{}.{}", p.major, p.minor)).collect::<Vec<_>>().join(", "),
        };
        let parts: Vec<&str> = text.trim().split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(unknown());
        }
        let numbers: Vec<u64> = parts.iter().map(|p| p.parse()).collect::<Result<_, _>>().map_err(|_| unknown())?;
        let mut profile =
            *PROFILES.iter().find(|p| p.major == numbers[0] && p.minor == numbers[1]).ok_or_else(unknown)?;
        if let Some(&micro) = numbers.get(2) {
            profile.micro = micro;
        }
        Ok(profile)
    }

    /// QEMU's `query-qmp-schema` reply for this version, as QEMU sent it.
    #[must_use]
    pub fn qemu_schema(&self) -> &'static str {
        self.schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_profiles() {
        assert_eq!(Profile::for_version("7.2").unwrap(), QEMU_7_2);
        assert_eq!(Profile::for_version(" 10.0 ").unwrap(), QEMU_10_0);
        assert_eq!(Profile::default(), QEMU_10_0);
        let custom = Profile::for_version("7.2.5").unwrap();
        assert_eq!((custom.major, custom.minor, custom.micro, custom.machine_type), (7, 2, 5, "pc-i440fx-7.2-machine"));
        assert_eq!(custom.to_string(), "7.2.5");
        for bad in ["9.0", "7", "7.2.x", "", "10.0.2.1", "seven"] {
            let err = Profile::for_version(bad).unwrap_err().to_string();
            assert_eq!(err, format!("no simulator profile for QEMU version '{bad}' (known: 7.2, 10.0)"));
        }
    }
}
