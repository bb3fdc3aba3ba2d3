//! Identifiers of sites, devices and cameras.
//!
//! An id is 1–64 characters of `[A-Za-z0-9_.-]`. The restriction is deliberate: ids become MQTT
//! topic levels (`sites/{site}/devices/{device}/…`), URL path segments and file names, so `/`,
//! `+`, `#`, whitespace and anything needing escaping are refused at the edge.

use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most 64 characters")]
    TooLong,
    #[error("may only contain letters, digits, '_', '-' and '.'")]
    BadChar,
}

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > 64 {
        return Err(IdError::TooLong);
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err(IdError::BadChar);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        /// The same rule as [`check_id`], for the HTTP API's OpenAPI document.
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({"type": "string", "pattern": ID_PATTERN})
            }
        }
    };
}

/// [`check_id`] as a regular expression (for JSON Schema; 1–64 bytes, all ASCII).
pub const ID_PATTERN: &str = "^[A-Za-z0-9_.-]{1,64}$";

id_type!(
    /// A supervised site (a cold store, a freight yard, a kitchen).
    SiteId
);
id_type!(
    /// A sensor or gateway; also its MQTT username.
    DeviceId
);
id_type!(
    /// A camera.
    CameraId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_topic_safe_names_only() {
        assert!(DeviceId::new("fridge-01").is_ok());
        assert!(DeviceId::new("a.b_c-1").is_ok());
        assert_eq!(DeviceId::new(""), Err(IdError::Empty));
        assert_eq!(DeviceId::new("a/b"), Err(IdError::BadChar));
        assert_eq!(DeviceId::new("a+"), Err(IdError::BadChar));
        assert_eq!(DeviceId::new("#"), Err(IdError::BadChar));
        assert_eq!(DeviceId::new("x".repeat(65)), Err(IdError::TooLong));
    }

    #[test]
    fn ids_deserialize_with_validation() {
        let ok: SiteId = serde_json_like("\"s1\"");
        assert_eq!(ok.as_str(), "s1");
    }

    fn serde_json_like(s: &str) -> SiteId {
        // The config crate uses TOML; a value deserializer is enough to check the hook.
        use serde::Deserialize;
        use serde::de::IntoDeserializer;
        let inner = s.trim_matches('"').to_string();
        let de: serde::de::value::StringDeserializer<serde::de::value::Error> =
            inner.into_deserializer();
        SiteId::deserialize(de).unwrap()
    }
}
