//! Codes of the Chinese supervision domain, each a type that can only hold a valid value.
//!
//! - [`Uscc`]: unified social credit code (统一社会信用代码, GB 32100-2015), 18 characters with a
//!   mod-31 check character.
//! - [`RegionCode`]: administrative region code (行政区划代码, GB/T 2260), 6 digits.
//! - [`ItemCode`]: supervision item code (监管事项目录编码), 14 digits.

use std::fmt;

/// GB 32100 character set; a character's value is its index.
const USCC_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weights for positions 1..17: 3^(i-1) mod 31.
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// Why a code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("must be exactly {expected} characters, got {got}")]
    Length { expected: usize, got: usize },
    #[error("character {position} ({ch:?}) is not allowed: {allowed}")]
    Char { position: usize, ch: char, allowed: &'static str },
    #[error(
        "character 18 (the check character) is {got:?} but the first 17 characters require {expected:?}"
    )]
    Check { expected: char, got: char },
}

/// A unified social credit code whose check character has been verified.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Uscc(String);

impl Uscc {
    pub fn new(s: &str) -> Result<Self, CodeError> {
        let bytes = s.as_bytes();
        if s.chars().count() != 18 || bytes.len() != 18 {
            return Err(CodeError::Length { expected: 18, got: s.chars().count() });
        }
        let mut sum = 0u32;
        let mut values = [0u32; 18];
        for (i, &b) in bytes.iter().enumerate() {
            let v = USCC_CHARSET.iter().position(|&c| c == b).ok_or(CodeError::Char {
                position: i + 1,
                ch: b as char,
                allowed: "digits and upper-case letters except I, O, S, V, Z",
            })?;
            values[i] = v as u32;
        }
        for i in 0..17 {
            sum += values[i] * USCC_WEIGHTS[i];
        }
        let check = (31 - sum % 31) % 31;
        if check != values[17] {
            return Err(CodeError::Check {
                expected: USCC_CHARSET[check as usize] as char,
                got: bytes[17] as char,
            });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn digits(s: &str, n: usize) -> Result<(), CodeError> {
    if s.len() != n || s.chars().count() != n {
        return Err(CodeError::Length { expected: n, got: s.chars().count() });
    }
    if let Some((i, ch)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(CodeError::Char { position: i + 1, ch, allowed: "digits only" });
    }
    Ok(())
}

/// A 6-digit administrative region code (GB/T 2260), e.g. `610100` for Xi'an.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RegionCode(String);

impl RegionCode {
    pub fn new(s: &str) -> Result<Self, CodeError> {
        digits(s, 6)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A 14-digit supervision item code from the supervision item catalogue.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ItemCode(String);

impl ItemCode {
    pub fn new(s: &str) -> Result<Self, CodeError> {
        digits(s, 14)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! code_impls {
    ($name:ident) => {
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
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
code_impls!(Uscc);
code_impls!(RegionCode);
code_impls!(ItemCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uscc_valid_examples_from_the_domain_notes() {
        assert!(Uscc::new("91350100M000100Y43").is_ok());
        assert!(Uscc::new("9144030071526726XG").is_ok());
    }

    #[test]
    fn uscc_rejects_wrong_check_character_and_says_which() {
        let err = Uscc::new("91350100M000100Y4Z").unwrap_err();
        assert!(matches!(err, CodeError::Char { position: 18, .. }), "{err}");
        let err = Uscc::new("91350100M000100Y44").unwrap_err();
        assert_eq!(err, CodeError::Check { expected: '3', got: '4' });
    }

    #[test]
    fn uscc_rejects_bad_length_and_forbidden_letters() {
        assert!(matches!(Uscc::new("9135"), Err(CodeError::Length { .. })));
        assert!(matches!(
            Uscc::new("91350100I000100Y43"),
            Err(CodeError::Char { position: 9, .. })
        ));
    }

    #[test]
    fn every_single_character_change_of_a_valid_code_is_detected() {
        let valid = "9144030071526726XG";
        for pos in 0..18 {
            for &c in USCC_CHARSET.iter() {
                let mut b = valid.as_bytes().to_vec();
                if b[pos] == c {
                    continue;
                }
                b[pos] = c;
                let s = String::from_utf8(b).unwrap();
                assert!(Uscc::new(&s).is_err(), "{s} accepted");
            }
        }
    }

    #[test]
    fn region_and_item_codes_are_digit_strings_of_fixed_length() {
        assert!(RegionCode::new("610100").is_ok());
        assert!(RegionCode::new("61010").is_err());
        assert!(RegionCode::new("61010a").is_err());
        assert!(ItemCode::new("33010600201001").is_ok());
        assert!(ItemCode::new("3301060020100").is_err());
    }
}
