//! The vocabulary of findings.

use std::fmt;
use std::str::FromStr;

/// The industry a site belongs to; departments receive records by industry.
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

/// Where a supervision record stands (docs/records.md, "Lifecycle").
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
pub enum RecordState {
    /// Nothing routed it: the duty room distributes it by hand.
    New,
    /// Sent to its candidate departments, waiting for one to claim it.
    Distributed,
    Claimed,
    /// Given to a person of the claiming department.
    Assigned,
    /// The handling's result entered.
    Resulted,
    /// The department's reply (an inspection, penalty or coercion record) given.
    FedBack,
    Closed,
    /// Every candidate department returned it (not theirs): the duty room routes it again.
    Returned,
}

/// What can be done to a supervision record.
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
pub enum RecordAction {
    Create,
    Distribute,
    Claim,
    Assign,
    Result,
    Feedback,
    Close,
    Reopen,
    Return,
    /// The deadline monitor: overdue, escalated to the supervising level.
    Escalate,
    /// A repeat of the record's finding attached to it.
    Attach,
}

/// What a department's feedback carries.
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
pub enum FeedbackKind {
    Inspection,
    Penalty,
    Coercion,
}

/// How a subscription's record events reach the department: signed HTTP POSTs, or QoS 1
/// publications to its subscriber on the hub's MQTT gateway.
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
pub enum Transport {
    Webhook,
    Mqtt,
}

/// A regulated entity's risk grade, A (lowest risk) to D.
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
pub enum RiskGrade {
    A,
    B,
    C,
    D,
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
str_enum!(RecordState {
    New => "new",
    Distributed => "distributed",
    Claimed => "claimed",
    Assigned => "assigned",
    Resulted => "resulted",
    FedBack => "fed_back",
    Closed => "closed",
    Returned => "returned",
});
str_enum!(RecordAction {
    Create => "create",
    Distribute => "distribute",
    Claim => "claim",
    Assign => "assign",
    Result => "result",
    Feedback => "feedback",
    Close => "close",
    Reopen => "reopen",
    Return => "return",
    Escalate => "escalate",
    Attach => "attach",
});
str_enum!(FeedbackKind { Inspection => "inspection", Penalty => "penalty", Coercion => "coercion" });
str_enum!(RiskGrade { A => "A", B => "B", C => "C", D => "D" });
str_enum!(Transport { Webhook => "webhook", Mqtt => "mqtt" });
