//! The administrator's password: argon2id hashes, and the rules a new password must meet.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Fewer characters than this is refused: with the sign-in delay, 10 characters put guessing
/// out of reach while staying typeable.
pub const MIN_LENGTH: usize = 10;
/// More is refused: argon2 hashes any length, but a megabyte "password" is an attack on the CPU.
pub const MAX_LENGTH: usize = 256;

/// Passwords people pick first, refused whatever their length (lowercased; the check ignores case).
const COMMON: &str = include_str!("common_passwords.txt");

/// Why a new password was refused. `Display` is the English reason, for the command line; the
/// UI shows the catalogue's text under [`WeakPassword::key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("the password is too short: at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("the password is too long: at most {MAX_LENGTH} characters")]
    TooLong,
    #[error("the password is one of the most common passwords; choose one nobody would guess")]
    Common,
    #[error(
        "the password repeats one character or a simple sequence; choose one nobody would guess"
    )]
    Pattern,
}

impl WeakPassword {
    /// The catalogue key of the reason.
    pub fn key(&self) -> &'static str {
        match self {
            WeakPassword::TooShort => "password.too-short",
            WeakPassword::TooLong => "password.too-long",
            WeakPassword::Common => "password.common",
            WeakPassword::Pattern => "password.pattern",
        }
    }
}

/// Checks a new password against the rules above.
pub fn check_strength(password: &str) -> Result<(), WeakPassword> {
    let chars: Vec<char> = password.chars().collect();
    if chars.len() < MIN_LENGTH {
        return Err(WeakPassword::TooShort);
    }
    if chars.len() > MAX_LENGTH {
        return Err(WeakPassword::TooLong);
    }
    let lower = password.to_lowercase();
    if COMMON
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|common| {
            lower == common || lower.trim_end_matches(|c: char| c.is_ascii_digit()) == common
        })
    {
        return Err(WeakPassword::Common);
    }
    if is_pattern(&chars) {
        return Err(WeakPassword::Pattern);
    }
    Ok(())
}

/// One character repeated, or a run that steps by one code point (`abcdefghij`, `9876543210`).
fn is_pattern(chars: &[char]) -> bool {
    let steps: Vec<i64> = chars
        .windows(2)
        .map(|w| w[1] as i64 - w[0] as i64)
        .collect();
    steps.iter().all(|&s| s == 0) || steps.iter().all(|&s| s == 1) || steps.iter().all(|&s| s == -1)
}

/// A failure of the hashing library itself (never a wrong password).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl HashError {
    pub fn new(problem: impl std::fmt::Display) -> Self {
        HashError(problem.to_string())
    }
}

/// The argon2id hash of a password, in PHC form (algorithm, parameters and salt included).
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt_bytes = [0u8; 16];
    getrandom::fill(&mut salt_bytes).map_err(|e| HashError(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches a stored hash. A stored hash that does not parse matches nothing.
pub fn verify(password: &str, stored_hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored_hash) else {
        tracing::error!("the stored admin password hash is malformed; set a new password");
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A random password for a first start with none set: 20 characters from an alphabet without
/// look-alikes (no 0/O, 1/l/I).
pub fn generate() -> Result<String, HashError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| HashError(e.to_string()))?;
    // 256 is not a multiple of the alphabet's 56: the first 8 letters come up 5/4 as often,
    // which leaves about 115 bits; plenty for a password that is changed after the first sign-in.
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_the_reason() {
        assert_eq!(check_strength("short"), Err(WeakPassword::TooShort));
        assert_eq!(check_strength(&"x".repeat(300)), Err(WeakPassword::TooLong));
        assert_eq!(check_strength("password123"), Err(WeakPassword::Common));
        assert_eq!(check_strength("Qwertyuiop"), Err(WeakPassword::Common));
        assert_eq!(check_strength("aaaaaaaaaaaa"), Err(WeakPassword::Pattern));
        assert_eq!(check_strength("0123456789"), Err(WeakPassword::Pattern));
        assert_eq!(check_strength("9876543210"), Err(WeakPassword::Pattern));
        assert_eq!(check_strength("correct horse battery"), Ok(()));
        // Ten Cyrillic letters are ten characters, not twenty bytes' worth of anything.
        assert_eq!(check_strength("пароль-для-входа"), Ok(()));
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(h, hash("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn generated_passwords_pass_the_rules() {
        for _ in 0..20 {
            let p = generate().unwrap();
            assert_eq!(p.chars().count(), 20);
            assert_eq!(check_strength(&p), Ok(()));
        }
    }
}
