//! Random tokens, how they are kept at rest, and cookies read off a request: what the amoCRM
//! OAuth consent (state and nonce) and the web UI's sessions (session and CSRF tokens) share.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// 32 random bytes from the operating system, as hex (256 bits: not guessable).
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// How a token is kept at rest: its SHA-256, so a copy of the database opens nothing.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The value of cookie `name` in a request's headers (the name matched exactly).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_are_random_256_bit_and_kept_hashed() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(digest(&a), a);
        assert_eq!(digest(&a), digest(&a));
    }

    #[test]
    fn cookies_are_read_by_exact_name_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static(
                "a=1; callbridge_session_x=2; callbridge_oauth_nonce=abc ; callbridge_session=3",
            ),
        );
        assert_eq!(cookie(&h, "callbridge_session"), Some("3"));
        assert_eq!(cookie(&h, "callbridge_oauth_nonce"), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
        assert_eq!(cookie(&HeaderMap::new(), "a"), None);
    }
}
