//! Secrets at rest: the tenants' Mango salts, the CRM section's `long_lived_token` and
//! `client_secret`, and the stored OAuth tokens are kept encrypted, on SQLite and PostgreSQL
//! alike, with ChaCha20-Poly1305 under a 32-byte key the service is given at start-up.
//!
//! A sealed value is text: `enc:v1:<key id>:<hex of nonce, ciphertext and tag>`. The key id (the
//! first 8 bytes of an HMAC of a fixed label under the key, in hex) names the key without
//! revealing it, so a value sealed under an older key is recognised. Each value is sealed with
//! its place as associated data (`tenants.mango_api_salt:<tenant>`, ...), so a sealed value
//! copied to another tenant or column does not open.
//!
//! The `secret_key_check` table (migration 6) holds the current key's id and a known text sealed
//! under it: a wrong key is refused at start-up instead of failing on the first secret it reads.
//! [`Store::unlock_secrets`] checks the key, seals legacy plain values (the upgrade path) and
//! re-seals values under a previous key (rotation), in one transaction.
//!
//! The Mango API key stays in clear: it arrives with every webhook and must be looked up and
//! kept unique, which an encrypted column cannot do; it is an identifier, the salt is the secret.

use crate::{with_writer, Result, Store, StoreError};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

const SEALED_PREFIX: &str = "enc:v1:";
/// The known text sealed in `secret_key_check`.
const CHECK_TEXT: &str = "callbridge secret key check";
const CHECK_PLACE: &str = "secret_key_check";
/// The fields of a tenant's CRM section that are secrets.
pub const CRM_SECRET_FIELDS: &[&str] = &["long_lived_token", "client_secret"];

/// What a secret shows in `Debug` output.
pub(crate) const HIDDEN: &str = "***";

/// The CRM section with each secret field shown as [`HIDDEN`], for `Debug` output.
pub(crate) fn hide_crm_secrets(crm: &serde_json::Value) -> serde_json::Value {
    let mut shown = crm.clone();
    if let serde_json::Value::Object(map) = &mut shown {
        for field in CRM_SECRET_FIELDS {
            if let Some(value) = map.get_mut(*field) {
                *value = serde_json::Value::String(HIDDEN.into());
            }
        }
    }
    shown
}

/// Why a secret key is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("must be 32 bytes, written as 64 hex digits or in base64 (got {0} bytes)")]
    Length(usize),
    #[error("must be 32 bytes, written as 64 hex digits or in base64")]
    Encoding,
}

/// A 32-byte secret key. Its `Debug` shows the key id only.
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; 32],
    id: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            b"callbridge secret key id",
        );
        let id = hex::encode(&tag.as_ref()[..8]);
        SecretKey { bytes, id }
    }

    /// Reads a key written as 64 hex digits or as base64 (standard or URL alphabet, padded or
    /// not); surrounding whitespace is ignored. The error never repeats the text.
    pub fn parse(text: &str) -> std::result::Result<SecretKey, KeyError> {
        use base64::Engine;
        let text = text.trim();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| KeyError::Encoding)?
        } else {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|e| e.decode(text).ok())
                .ok_or(KeyError::Encoding)?
        };
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(decoded.len()))?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// A new random key.
    pub fn generate() -> std::result::Result<SecretKey, KeyError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Encoding)?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// The key's public name: 16 hex digits derived from it, safe to log.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as 64 hex digits, for writing a key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// A key for another purpose (`label` names it), derived from this one: HMAC-SHA256 of the
    /// label. Rotating this key changes every derived key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.bytes),
            label.as_bytes(),
        );
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte key is what ChaCha20-Poly1305 takes, so this cannot fail.
        LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &self.bytes).expect("32-byte ChaCha20 key"),
        )
    }

    /// Seals `plain` for `place`.
    pub fn seal(&self, place: &str, plain: &str) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Secrets("no randomness for a nonce".into()))?;
        let mut data = plain.as_bytes().to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(place.as_bytes()),
                &mut data,
            )
            .map_err(|_| StoreError::Secrets(format!("{place}: cannot seal")))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{SEALED_PREFIX}{}:{}", self.id, hex::encode(out)))
    }

    fn open(&self, place: &str, body: &str) -> Result<String> {
        let bad = || {
            StoreError::Secrets(format!(
                "{place}: does not open under key {} (damaged, or moved from another row)",
                self.id
            ))
        };
        let raw = hex::decode(body).map_err(|_| bad())?;
        if raw.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
        let mut data = sealed.to_vec();
        let plain = self
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(place.as_bytes()),
                &mut data,
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }
}

/// The current key, which seals, and previous keys, which only open (during a rotation).
#[derive(Debug, Clone)]
pub struct Keyring {
    current: SecretKey,
    previous: Vec<SecretKey>,
}

/// What a stored value is.
enum Stored<'a> {
    Plain,
    Sealed { key_id: &'a str, body: &'a str },
}

fn classify(value: &str) -> Stored<'_> {
    match value
        .strip_prefix(SEALED_PREFIX)
        .and_then(|rest| rest.split_once(':'))
    {
        Some((key_id, body)) => Stored::Sealed { key_id, body },
        None => Stored::Plain,
    }
}

impl Keyring {
    pub fn new(current: SecretKey, previous: Vec<SecretKey>) -> Keyring {
        let previous = previous
            .into_iter()
            .filter(|k| k.id != current.id)
            .collect();
        Keyring { current, previous }
    }

    pub fn current(&self) -> &SecretKey {
        &self.current
    }

    fn key(&self, id: &str) -> Option<&SecretKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    /// Opens a stored value: sealed under a known key, or plain (a legacy row, sealed at the
    /// next start-up).
    pub fn open(&self, place: &str, stored: &str) -> Result<String> {
        match classify(stored) {
            Stored::Plain => Ok(stored.to_string()),
            Stored::Sealed { key_id, body } => match self.key(key_id) {
                Some(key) => key.open(place, body),
                None => Err(StoreError::Secrets(format!(
                    "{place}: sealed under key {key_id}, which is not configured"
                ))),
            },
        }
    }

    pub fn seal(&self, place: &str, plain: &str) -> Result<String> {
        self.current.seal(place, plain)
    }

    /// The value as it should be stored: `None` when it already is (sealed under the current
    /// key), else sealed under the current key.
    fn reseal(&self, place: &str, stored: &str) -> Result<Option<String>> {
        if let Stored::Sealed { key_id, .. } = classify(stored) {
            if key_id == self.current.id {
                // Opened anyway, so a damaged value is found at start-up, not at first use.
                self.open(place, stored)?;
                return Ok(None);
            }
        }
        let plain = self.open(place, stored)?;
        self.seal(place, &plain).map(Some)
    }

    /// The CRM section with its secret fields sealed (`seal`) or opened.
    fn crm_fields(
        &self,
        tenant_id: &str,
        crm: &serde_json::Value,
        mut each: impl FnMut(&str, &str) -> Result<Option<String>>,
    ) -> Result<Option<serde_json::Value>> {
        let serde_json::Value::Object(map) = crm else {
            return Ok(None);
        };
        let mut out = map.clone();
        let mut changed = false;
        for field in CRM_SECRET_FIELDS {
            if let Some(serde_json::Value::String(v)) = map.get(*field) {
                if let Some(new) = each(&crm_place(tenant_id, field), v)? {
                    out.insert((*field).to_string(), serde_json::Value::String(new));
                    changed = true;
                }
            }
        }
        Ok(changed.then_some(serde_json::Value::Object(out)))
    }

    pub(crate) fn seal_crm(
        &self,
        tenant_id: &str,
        crm: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        Ok(self
            .crm_fields(tenant_id, crm, |place, v| self.seal(place, v).map(Some))?
            .unwrap_or_else(|| crm.clone()))
    }

    pub(crate) fn open_crm(
        &self,
        tenant_id: &str,
        crm: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        Ok(self
            .crm_fields(tenant_id, crm, |place, v| self.open(place, v).map(Some))?
            .unwrap_or_else(|| crm.clone()))
    }
}

pub(crate) fn salt_place(tenant_id: &str) -> String {
    format!("tenants.mango_api_salt:{tenant_id}")
}

pub(crate) fn crm_place(tenant_id: &str, field: &str) -> String {
    format!("tenants.crm.{field}:{tenant_id}")
}

pub(crate) fn tokens_place(tenant_id: &str) -> String {
    format!("crm_tokens.tokens:{tenant_id}")
}

/// What [`Store::unlock_secrets`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unlocked {
    /// The key check was written for the first time (a new database, or one from before
    /// encryption).
    pub first_key: bool,
    /// The database's key was a previous one: it is the current one now.
    pub rotated_from: Option<String>,
    /// Plain values found and sealed (a database from before encryption).
    pub sealed_plain: usize,
    /// Values sealed under a previous key, sealed again under the current one.
    pub resealed: usize,
}

/// `secret_key_check`'s one row: the id of the key the database is sealed under, and a known
/// text sealed with it.
#[derive(sqlx::FromRow)]
struct KeyCheck {
    key_id: String,
    sealed: String,
}

/// A tenant's secrets as stored: its salt, and its CRM section (JSON) holding sealed fields.
#[derive(sqlx::FromRow)]
struct TenantSecrets {
    id: String,
    mango_api_salt: String,
    crm: String,
}

/// A tenant's OAuth tokens, sealed.
#[derive(sqlx::FromRow)]
struct SealedTokens {
    tenant_id: String,
    tokens: String,
}

impl Store {
    /// The id of the key the database's secrets are sealed under, when any was ever set.
    pub async fn secret_key_id(&self) -> Result<Option<String>> {
        Ok(crate::with_db!(self.db(), pool => {
            sqlx::query_scalar("SELECT key_id FROM secret_key_check WHERE id = 1")
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Checks `keyring` against the database and makes it the store's: refused when the
    /// database's secrets are sealed under a key the ring does not hold. Seals plain values and
    /// re-seals those under a previous key, and records the current key, in one transaction.
    /// Tenants and tokens can be read and written only after this.
    pub async fn unlock_secrets(&self, keyring: Keyring) -> Result<Unlocked> {
        let mut done = Unlocked::default();
        let current_id = keyring.current.id.clone();
        with_writer!(self, conn => {
            let mut tx = sqlx::Connection::begin(conn).await?;
            if self.backend() == "postgres" {
                // Instances starting together on one database rotate one at a time.
                sqlx::query("SELECT pg_advisory_xact_lock(7402170)").execute(&mut *tx).await?;
            }
            let check: Option<KeyCheck> =
                sqlx::query_as("SELECT key_id, sealed FROM secret_key_check WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            match &check {
                None => done.first_key = true,
                Some(KeyCheck { key_id, sealed }) => {
                    let opened = keyring.open(CHECK_PLACE, sealed).ok();
                    if opened.as_deref() != Some(CHECK_TEXT) {
                        return Err(StoreError::WrongSecretKey {
                            stored: key_id.clone(),
                            given: current_id,
                        });
                    }
                    if *key_id != current_id {
                        done.rotated_from = Some(key_id.clone());
                    }
                }
            }
            let tenants: Vec<TenantSecrets> =
                sqlx::query_as("SELECT id, mango_api_salt, crm FROM tenants")
                    .fetch_all(&mut *tx)
                    .await?;
            for TenantSecrets { id, mango_api_salt: salt, crm: crm_text } in tenants {
                let mut count = |stored: &str| match classify(stored) {
                    Stored::Plain => done.sealed_plain += 1,
                    Stored::Sealed { .. } => done.resealed += 1,
                };
                let new_salt = keyring.reseal(&salt_place(&id), &salt)?;
                if new_salt.is_some() {
                    count(&salt);
                }
                let crm: serde_json::Value = serde_json::from_str(&crm_text)
                    .map_err(|e| StoreError::Corrupt(format!("crm of tenant {id}: {e}")))?;
                let new_crm = keyring.crm_fields(&id, &crm, |place, v| {
                    let new = keyring.reseal(place, v)?;
                    if new.is_some() {
                        count(v);
                    }
                    Ok(new)
                })?;
                if new_salt.is_some() || new_crm.is_some() {
                    sqlx::query("UPDATE tenants SET mango_api_salt = $1, crm = $2 WHERE id = $3")
                        .bind(new_salt.unwrap_or(salt))
                        .bind(new_crm.map(|c| c.to_string()).unwrap_or(crm_text))
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let tokens: Vec<SealedTokens> =
                sqlx::query_as("SELECT tenant_id, tokens FROM crm_tokens")
                    .fetch_all(&mut *tx)
                    .await?;
            for SealedTokens { tenant_id: id, tokens: stored } in tokens {
                if let Some(new) = keyring.reseal(&tokens_place(&id), &stored)? {
                    match classify(&stored) {
                        Stored::Plain => done.sealed_plain += 1,
                        Stored::Sealed { .. } => done.resealed += 1,
                    }
                    sqlx::query("UPDATE crm_tokens SET tokens = $1 WHERE tenant_id = $2")
                        .bind(new)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            if check.as_ref().is_none_or(|c| c.key_id != current_id) {
                sqlx::query(
                    "INSERT INTO secret_key_check (id, key_id, sealed) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed",
                )
                .bind(&current_id)
                .bind(keyring.seal(CHECK_PLACE, CHECK_TEXT)?)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        // A second unlock (a test, a restart in-process) keeps the first ring: the database is
        // sealed under its current key, which the check above proved to be this one too.
        let _ = self.secrets.set(keyring);
        Ok(done)
    }

    /// The store's keyring, once unlocked.
    pub(crate) fn keyring(&self) -> Result<&Keyring> {
        self.secrets.get().ok_or_else(|| {
            StoreError::Secrets(
                "the secret key is not loaded (Store::unlock_secrets was not called)".into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes([b; 32])
    }

    #[test]
    fn keys_parse_from_hex_and_base64_and_errors_do_not_echo_them() {
        let hex_text = "11".repeat(32);
        assert_eq!(SecretKey::parse(&hex_text).unwrap().id(), key(0x11).id());
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode([0x11u8; 32]);
        assert_eq!(
            SecretKey::parse(&format!(" {b64}\n")).unwrap().id(),
            key(0x11).id()
        );
        let err = SecretKey::parse("not-a-key-at-all!")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("not-a-key"), "{err}");
        assert_eq!(SecretKey::parse("AAAA").unwrap_err(), KeyError::Length(3));
        assert!(!format!("{:?}", key(0x11)).contains("1111"));
    }

    #[test]
    fn sealed_values_open_only_under_their_key_and_place() {
        let ring = Keyring::new(key(1), vec![]);
        let sealed = ring.seal("p:acme", "the salt").unwrap();
        assert!(sealed.starts_with("enc:v1:"), "{sealed}");
        assert!(!sealed.contains("the salt"));
        assert_eq!(ring.open("p:acme", &sealed).unwrap(), "the salt");
        assert!(ring.open("p:other", &sealed).is_err());
        assert!(Keyring::new(key(2), vec![])
            .open("p:acme", &sealed)
            .is_err());
        // Two seals of one value differ (fresh nonce each time).
        assert_ne!(sealed, ring.seal("p:acme", "the salt").unwrap());
        // A plain legacy value reads as itself.
        assert_eq!(ring.open("p:acme", "plain").unwrap(), "plain");
        // A previous key still opens.
        let rotated = Keyring::new(key(2), vec![key(1)]);
        assert_eq!(rotated.open("p:acme", &sealed).unwrap(), "the salt");
        assert!(rotated.reseal("p:acme", &sealed).unwrap().is_some());
    }

    #[test]
    fn derived_keys_differ_by_label_and_key() {
        assert_ne!(key(1).derive("a"), key(1).derive("b"));
        assert_ne!(key(1).derive("a"), key(2).derive("a"));
    }
}
