//! Where the key for secrets at rest comes from, and what the first start does.
//!
//! The key (32 bytes, 64 hex digits or base64) is, in this order: `CALLBRIDGE_SECRET_KEY` (or
//! `secret_key` in the file, though the environment is the place for it); the file named by
//! `secret_key_file`; the file `secret.key` in the data folder. When none is there:
//! - the database holds no encrypted secret yet (a new database, or one from before
//!   encryption): a key is generated into `<data_dir>/secret.key` (mode 0600) and the log says
//!   so, naming the file and the key id (never the key);
//! - the database's secrets are encrypted: start-up is refused, naming the settings.
//!
//! A key that is not the database's is refused at start-up (the store keeps a key check). To
//! rotate, configure the new key and give the old one in `CALLBRIDGE_PREVIOUS_SECRET_KEYS`
//! (`previous_secret_keys`; several separated by commas): the start-up re-encrypts every secret
//! under the new key, after which the old one can be dropped. Card-stream tokens are signed with a
//! key derived from the secret key, so a rotation revokes them.

use crate::config::Config;
use callbridge_store::{KeyError, Keyring, SecretKey, Store, StoreError};
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};

/// Why the secret key could not be found, made or used. Each names the setting or file to fix,
/// never a key.
#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("secret_key_file {}: cannot read: {source}", path.display())]
    UnreadableFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret_key_file {}: the key {source}", path.display())]
    BadFile { path: PathBuf, source: KeyError },
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a secret key: {0}")]
    Generate(#[source] KeyError),
    #[error("CALLBRIDGE_SECRET_KEY (secret_key): the key {0}")]
    BadConfigured(#[source] KeyError),
    #[error(
        "CALLBRIDGE_PREVIOUS_SECRET_KEYS (previous_secret_keys), key {position}: the key {source}"
    )]
    BadPrevious { position: usize, source: KeyError },
    #[error(
        "the database's secrets are encrypted (key id {key_id}) but no secret key is \
         configured: set CALLBRIDGE_SECRET_KEY or secret_key_file to that key \
         ({} does not exist)",
        path.display()
    )]
    NotConfigured { key_id: String, path: PathBuf },
    #[error(
        "{source} (the key came from {from}; previous keys go in CALLBRIDGE_PREVIOUS_SECRET_KEYS)"
    )]
    WrongKey { source: StoreError, from: String },
    #[error("secrets at rest: {0}")]
    Unlock(#[source] StoreError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The key file made at first start when no key is configured.
pub const DEFAULT_KEY_FILE: &str = "secret.key";

/// The label of the card-stream token key derived from the secret key.
pub const CARD_TOKEN_KEY_LABEL: &str = "callbridge card-stream tokens v1";

fn read_key_file(path: &Path) -> Result<SecretKey, SecretKeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretKeyError::UnreadableFile {
        path: path.to_path_buf(),
        source,
    })?;
    SecretKey::parse(&text).map_err(|source| SecretKeyError::BadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a new key file readable by the owner only; when another process made it first, that
/// one is read.
fn create_key_file(path: &Path) -> Result<(SecretKey, bool), SecretKeyError> {
    use std::io::Write;
    let cannot_create = |at: &Path| {
        let path = at.to_path_buf();
        move |source| SecretKeyError::Create { path, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(cannot_create(dir))?;
    }
    let key = SecretKey::generate().map_err(SecretKeyError::Generate)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{}\n", key.to_hex()).as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(|source| SecretKeyError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
            Ok((key, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key_file(path).map(|k| (k, false))
        }
        Err(e) => Err(cannot_create(path)(e)),
    }
}

/// A key and where it came from, for messages.
type Sourced = (SecretKey, String);

/// The configured keys: the current one and where it came from, and the previous ones.
fn configured(config: &Config) -> Result<(Option<Sourced>, Vec<SecretKey>), SecretKeyError> {
    let current = if let Some(text) = &config.secret_key {
        let key = SecretKey::parse(text.expose_secret()).map_err(SecretKeyError::BadConfigured)?;
        Some((key, "CALLBRIDGE_SECRET_KEY".to_string()))
    } else if let Some(path) = &config.secret_key_file {
        Some((
            read_key_file(path)?,
            format!("secret_key_file {}", path.display()),
        ))
    } else {
        let path = default_key_file(config);
        if path.exists() {
            Some((
                read_key_file(&path)?,
                format!("the key file {}", path.display()),
            ))
        } else {
            None
        }
    };
    let mut previous = Vec::new();
    if let Some(list) = &config.previous_secret_keys {
        for (i, text) in list
            .expose_secret()
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .enumerate()
        {
            previous.push(SecretKey::parse(text).map_err(|source| {
                SecretKeyError::BadPrevious {
                    position: i + 1,
                    source,
                }
            })?);
        }
    }
    Ok((current, previous))
}

pub fn default_key_file(config: &Config) -> PathBuf {
    config.data_dir.join(DEFAULT_KEY_FILE)
}

/// Finds (or at first start makes) the secret key and unlocks the store's secrets with it:
/// plain secrets of an older database are encrypted, those under a previous key re-encrypted.
/// The error names the setting to fix, never a key.
pub async fn unlock(store: &Store, config: &Config) -> Result<SecretKey, SecretKeyError> {
    let (current, previous) = configured(config)?;
    let stored_id = store.secret_key_id().await?;
    let (key, source) = match current {
        Some(found) => found,
        None => {
            let path = default_key_file(config);
            if let Some(key_id) = stored_id {
                return Err(SecretKeyError::NotConfigured { key_id, path });
            }
            let (key, made) = create_key_file(&path)?;
            if made {
                tracing::warn!(
                    file = %path.display(),
                    key_id = key.id(),
                    "no secret key configured: generated one to encrypt secrets at rest; back \
                     this file up (without it the stored salts and tokens cannot be read), or \
                     set CALLBRIDGE_SECRET_KEY"
                );
            }
            (key, format!("the key file {}", path.display()))
        }
    };
    let done = store
        .unlock_secrets(Keyring::new(key.clone(), previous))
        .await
        .map_err(|e| match e {
            StoreError::WrongSecretKey { .. } => SecretKeyError::WrongKey {
                source: e,
                from: source.clone(),
            },
            other => SecretKeyError::Unlock(other),
        })?;
    if let Some(old) = &done.rotated_from {
        tracing::warn!(
            from = %old,
            to = key.id(),
            resealed = done.resealed,
            "secret key rotated: every secret is encrypted under the new key; the previous key \
             can be removed from the configuration"
        );
    }
    if done.sealed_plain > 0 {
        tracing::warn!(
            count = done.sealed_plain,
            key_id = key.id(),
            "encrypted secrets stored in clear by an older version"
        );
    }
    tracing::info!(key_id = key.id(), from = %source, "secrets at rest unlocked");
    Ok(key)
}
