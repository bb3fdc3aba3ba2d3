//! Passwords, session ids, CSRF tokens and API tokens: how they are made and how they are kept.
//!
//! Passwords are argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane). Session ids and
//! API tokens are 256 random bits, so a fast hash (SHA-256) is enough to keep them: only the
//! hash is stored, and a copy of the database logs nobody in.

use base64::Engine;
use rand::RngCore;
use sha2::Digest;

/// The recognisable start of every API token (secret scanners can look for it).
pub const TOKEN_PREFIX: &str = "hubt_";

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;
/// The longest (argon2 takes anything; this bounds the work a request can ask for).
pub const MAX_PASSWORD_LEN: usize = 1000;

/// `n` random bytes, URL-safe base64 without padding.
pub fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A new API token: the prefix and 256 random bits.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random(32))
}

/// Hex SHA-256 of a session id or token, as stored.
pub fn digest(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn argon2() -> argon2::Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
    let params = argon2::Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// argon2id PHC string of a password (CPU-heavy: call off the async runtime).
pub fn hash_password(password: &str) -> String {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .expect("argon2 hashes any password")
}

/// Whether `password` matches the PHC string (CPU-heavy: call off the async runtime).
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::password_hash::PasswordHash::new(phc)
        .is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash no password matches, verified for unknown usernames so that they take as long as
/// known ones (no user enumeration by timing).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random(24)))
}

/// Why a new password is refused, if it is.
pub fn password_problem(password: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Some(format!("a password needs at least {MIN_PASSWORD_LEN} characters"));
    }
    (n > MAX_PASSWORD_LEN).then(|| format!("a password has at most {MAX_PASSWORD_LEN} characters"))
}

/// Compares two secrets in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_tokens_look_like_tokens() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterz", &h));
        assert!(!verify_password("x", "not a hash"));
        let t = new_token();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == TOKEN_PREFIX.len() + 43, "{t}");
        assert_eq!(digest(&t).len(), 64);
        assert_ne!(new_token(), t);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert!(password_problem("short").is_some() && password_problem("long enough!").is_none());
    }
}
