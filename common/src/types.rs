//! The vocabulary of findings.

use std::fmt;
use std::str::FromStr;

/// The industry a site belongs to; departments receive records by industry.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Industry {
    Transport,
    Food,
}

/// Severity tiers decide routing and deadlines (rodents: immediate; open bins: rectification
/// deadline; no gloves: routine). Ordered from least to most severe.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Minor,
    Major,
    Critical,
}

/// Life cycle of a finding: active → acknowledged → cleared. A repeat while not cleared updates
/// the finding; after clearing, a repeat opens a new one.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingState {
    Active,
    Acknowledged,
    Cleared,
}

/// A person's verdict on a finding (the duty room's verification), given once.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Unverified,
    /// A true finding, ready to become a supervision record.
    Verified,
    /// A false positive.
    Dismissed,
}

/// Why a finding was dismissed (a fixed list, so that false positives can be counted by
/// cause; `other` needs a note).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DismissReason {
    /// An animal (a cat on the loading dock).
    Animal,
    /// A shadow, reflection or change of light.
    ShadowOrLight,
    /// A person allowed to be there.
    AuthorisedPerson,
    /// A faulty sensor or camera.
    EquipmentFault,
    /// A test or maintenance work.
    TestOrMaintenance,
    /// The same event as another finding.
    Duplicate,
    /// Something else, said in the note.
    Other,
}

macro_rules! str_enum {
    ($name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown {} {s:?}; expected one of: {}",
                        stringify!($name).to_lowercase(),
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}

str_enum!(Industry { Transport => "transport", Food => "food" });
str_enum!(Severity { Info => "info", Minor => "minor", Major => "major", Critical => "critical" });
str_enum!(FindingState {
    Active => "active",
    Acknowledged => "acknowledged",
    Cleared => "cleared",
});
str_enum!(Verdict { Unverified => "unverified", Verified => "verified", Dismissed => "dismissed" });
str_enum!(DismissReason {
    Animal => "animal",
    ShadowOrLight => "shadow_or_light",
    AuthorisedPerson => "authorised_person",
    EquipmentFault => "equipment_fault",
    TestOrMaintenance => "test_or_maintenance",
    Duplicate => "duplicate",
    Other => "other",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_names() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>().unwrap(), *s);
        }
        for s in FindingState::ALL {
            assert_eq!(s.as_str().parse::<FindingState>().unwrap(), *s);
        }
        let err = "urgent".parse::<Severity>().unwrap_err();
        assert!(err.contains("critical"), "{err}");
        assert!(Severity::Critical > Severity::Minor);
    }
}
