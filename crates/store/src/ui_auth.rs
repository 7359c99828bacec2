//! The web UI's administrator: the password hash, signed-in sessions, and the count of wrong
//! passwords that makes each further attempt wait longer. Kept in the database, so that several
//! instances sharing PostgreSQL agree on all three.

use crate::{with_db, Result, Store};

/// A signed-in browser session, found by the SHA-256 of its cookie's token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UiSession {
    /// The token every form of this session carries (CSRF).
    pub csrf_token: String,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub expires_at_ms: i64,
}

/// Wrong passwords since the last successful sign-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct SignInFailures {
    pub failures: i64,
    pub last_failure_ms: i64,
    /// No attempt is checked before this time.
    pub locked_until_ms: i64,
}

impl Store {
    /// The administrator's password hash (argon2id, PHC string), when one was set.
    pub async fn admin_password_hash(&self) -> Result<Option<String>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT password_hash FROM ui_admin WHERE id = 1")
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Sets the administrator's password hash and ends every session (a new password signs
    /// everyone out).
    pub async fn set_admin_password_hash(&self, hash: &str, now_ms: i64) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO ui_admin (id, password_hash, set_at_ms) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash, set_at_ms = excluded.set_at_ms",
            )
            .bind(hash)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM ui_sessions").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM ui_sign_in_failures").execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Stores a new session; sessions past their expiry are removed on the way.
    pub async fn create_ui_session(&self, token_hash: &str, session: &UiSession) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM ui_sessions WHERE expires_at_ms <= $1")
                .bind(session.created_at_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO ui_sessions (token_hash, csrf_token, created_at_ms, last_seen_ms, expires_at_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(&session.csrf_token)
            .bind(session.created_at_ms)
            .bind(session.last_seen_ms)
            .bind(session.expires_at_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The session with this token hash, unless it has expired.
    pub async fn ui_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<UiSession>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT csrf_token, created_at_ms, last_seen_ms, expires_at_ms FROM ui_sessions \
                 WHERE token_hash = $1 AND expires_at_ms > $2",
            )
            .bind(token_hash)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Moves a session's idle expiry forward.
    pub async fn touch_ui_session(
        &self,
        token_hash: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()> {
        with_db!(&self.db, pool => {
            sqlx::query("UPDATE ui_sessions SET last_seen_ms = $2, expires_at_ms = $3 WHERE token_hash = $1")
                .bind(token_hash)
                .bind(now_ms)
                .bind(expires_at_ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn delete_ui_session(&self, token_hash: &str) -> Result<()> {
        with_db!(&self.db, pool => {
            sqlx::query("DELETE FROM ui_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn sign_in_failures(&self) -> Result<SignInFailures> {
        let row: Option<SignInFailures> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT failures, last_failure_ms, locked_until_ms FROM ui_sign_in_failures WHERE id = 1")
                .fetch_optional(pool)
                .await?
        });
        Ok(row.unwrap_or_default())
    }

    pub async fn set_sign_in_failures(&self, f: &SignInFailures) -> Result<()> {
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO ui_sign_in_failures (id, failures, last_failure_ms, locked_until_ms) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET failures = excluded.failures, last_failure_ms = excluded.last_failure_ms, \
                 locked_until_ms = excluded.locked_until_ms",
            )
            .bind(f.failures)
            .bind(f.last_failure_ms)
            .bind(f.locked_until_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn clear_sign_in_failures(&self) -> Result<()> {
        with_db!(&self.db, pool => {
            sqlx::query("DELETE FROM ui_sign_in_failures").execute(pool).await?;
        });
        Ok(())
    }
}
