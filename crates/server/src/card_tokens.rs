//! Scoped, expiring tokens for the card stream: one CRM user's cards of one tenant, for a
//! limited time, without the admin token.
//!
//! A token is `v1.<tenant>.<crm user id>.<expiry, Unix seconds>.<signature>`, the signature an
//! HMAC-SHA256 of everything before it under a key derived from the secret key (see
//! `secret_key.rs`): every instance on one database accepts the others' tokens, nobody who lacks
//! the secret key can make one, and rotating the secret key revokes them all. Tenant ids hold no
//! `.`, so the fields cannot be shifted.
//!
//! A token the card page gets for its stream (`/card/<link>/stream-token`) also names the
//! personal link it was issued for: `v2.<tenant>.<crm user id>.<link id>.<expiry>.<signature>`.
//! The stream checks that link is still live, so revoking it ends the page's stream at once,
//! whatever time the token has left.

use callbridge_core::settings::CrmUserId;
use ring::hmac;

/// Lifetime of a token when the request names none: a working day.
pub const DEFAULT_TTL_SECONDS: u64 = 12 * 3600;
/// The longest lifetime a token can be given: a week.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// Whose cards a token shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub tenant_id: String,
    pub crm_user_id: CrmUserId,
    /// The personal card link the token was issued for (the card page's tokens); `None` for a
    /// token minted through the admin API.
    pub link_id: Option<i64>,
    pub expires_at: i64,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token this service signed (or signed under another secret key).
    Invalid,
    /// Genuine, but its time is up.
    Expired,
}

fn signature(key: &[u8; 32], body: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body.as_bytes())
}

/// A token for `scope`.
pub fn mint(key: &[u8; 32], scope: &Scope) -> String {
    let body = match scope.link_id {
        None => format!(
            "v1.{}.{}.{}",
            scope.tenant_id, scope.crm_user_id, scope.expires_at
        ),
        Some(link) => format!(
            "v2.{}.{}.{link}.{}",
            scope.tenant_id, scope.crm_user_id, scope.expires_at
        ),
    };
    let tag = signature(key, &body);
    format!("{body}.{}", hex::encode(tag.as_ref()))
}

/// Checks a token at `now_s` (Unix seconds). The signature is checked first, in constant time,
/// so only a genuine token is told to be expired.
pub fn verify(key: &[u8; 32], token: &str, now_s: i64) -> Result<Scope, TokenError> {
    let (body, sig) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let sig = hex::decode(sig).map_err(|_| TokenError::Invalid)?;
    hmac::verify(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        body.as_bytes(),
        &sig,
    )
    .map_err(|_| TokenError::Invalid)?;
    let parts: Vec<&str> = body.split('.').collect();
    let (tenant, user, link, expiry) = match parts.as_slice() {
        ["v1", tenant, user, expiry] => (*tenant, *user, None, *expiry),
        ["v2", tenant, user, link, expiry] => (*tenant, *user, Some(*link), *expiry),
        _ => return Err(TokenError::Invalid),
    };
    let scope = Scope {
        tenant_id: tenant.to_string(),
        crm_user_id: user.parse().map_err(|_| TokenError::Invalid)?,
        link_id: link
            .map(|l| l.parse().map_err(|_| TokenError::Invalid))
            .transpose()?,
        expires_at: expiry.parse().map_err(|_| TokenError::Invalid)?,
    };
    if now_s > scope.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            tenant_id: "acme".into(),
            crm_user_id: CrmUserId::new(1001).unwrap(),
            link_id: None,
            expires_at: 2_000,
        }
    }

    #[test]
    fn a_token_carries_its_scope_until_it_expires() {
        let key = [1u8; 32];
        let token = mint(&key, &scope());
        assert_eq!(verify(&key, &token, 1_000), Ok(scope()));
        assert_eq!(verify(&key, &token, 2_001), Err(TokenError::Expired));
    }

    #[test]
    fn a_changed_or_foreign_token_is_invalid() {
        let key = [1u8; 32];
        let token = mint(&key, &scope());
        assert_eq!(verify(&[2u8; 32], &token, 0), Err(TokenError::Invalid));
        let other_user = token.replacen(".1001.", ".1002.", 1);
        assert_eq!(verify(&key, &other_user, 0), Err(TokenError::Invalid));
        let longer = token.replacen(".2000.", ".9999999999.", 1);
        assert_eq!(verify(&key, &longer, 0), Err(TokenError::Invalid));
        for junk in ["", ".", "v1", "test-admin-token", "v1.a.b.c.zz"] {
            assert_eq!(verify(&key, junk, 0), Err(TokenError::Invalid), "{junk}");
        }
    }

    #[test]
    fn a_link_token_names_its_link_and_cannot_lose_it() {
        let key = [1u8; 32];
        let linked = Scope {
            link_id: Some(42),
            ..scope()
        };
        let token = mint(&key, &linked);
        assert!(token.starts_with("v2.acme.1001.42.2000."), "{token}");
        assert_eq!(verify(&key, &token, 1_000), Ok(linked));
        // Dropping the link id (to escape its revocation) breaks the signature.
        let unlinked = token.replacen("v2.acme.1001.42.", "v1.acme.1001.", 1);
        assert_eq!(verify(&key, &unlinked, 0), Err(TokenError::Invalid));
    }
}
