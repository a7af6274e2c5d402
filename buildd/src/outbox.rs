//! The notification outbox: one row per terminal build and channel
//! (`webhook`, `email`), in the same database as the builds. A row is
//! marked delivered only after the channel accepted it (a 2xx, an SMTP
//! 250); until then it is retried with a growing delay, across restarts of
//! any server sharing the database. Delivery is at least once: a server
//! killed between a 2xx and its mark sends that one again.

use anyhow::Result;
use sqlx::Row;

use crate::db::{Backend, Db, now_ms};

/// A due delivery, claimed by this server for a while.
pub struct Due {
    pub id: i64,
    pub build_id: i64,
    pub channel: String,
    pub attempts: i64,
}

/// How long a claimed delivery is this server's before another may try it.
const CLAIM_MS: i64 = 60_000;

/// Attempts after which a delivery is given up (some 10 hours of retries).
pub const MAX_ATTEMPTS: i64 = 40;

/// The delay before attempt `attempts + 1`: 1 s doubling up to 15 min.
pub fn backoff_ms(attempts: i64) -> i64 {
    1000i64
        .saturating_mul(1 << attempts.clamp(1, 20).saturating_sub(1))
        .min(15 * 60_000)
}

impl Db {
    /// Adds a row per channel for each build that reached a terminal state
    /// and has none yet, then marks those builds notified. A crash between
    /// the two statements adds nothing twice (one row per build and channel).
    pub async fn enqueue_terminal(&self, channels: &[&str]) -> Result<()> {
        let now = now_ms();
        for ch in channels {
            sqlx::query(
                "INSERT INTO outbox (build_id, channel, next_try) SELECT id, $1, $2 FROM builds \
                 WHERE notified = 0 AND state IN ('succeeded', 'failed', 'canceled') \
                 ON CONFLICT (build_id, channel) DO NOTHING",
            )
            .bind(*ch)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        // Only the builds whose rows exist now (one may have ended meanwhile).
        let each = channels
            .iter()
            .enumerate()
            .map(|(i, _)| {
                format!(
                    " AND EXISTS (SELECT 1 FROM outbox o WHERE o.build_id = builds.id AND o.channel = ${})",
                    i + 1
                )
            })
            .collect::<String>();
        let sql = format!(
            "UPDATE builds SET notified = 1 WHERE notified = 0 \
             AND state IN ('succeeded', 'failed', 'canceled'){each}"
        );
        let mut q = sqlx::query(&sql);
        for ch in channels {
            q = q.bind(*ch);
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// The oldest due delivery, claimed for [`CLAIM_MS`] by this server.
    pub async fn claim_due(&self) -> Result<Option<Due>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let now = now_ms();
        let sql = format!(
            "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM outbox WHERE delivered IS NULL AND attempts < $3 \
             AND next_try <= $2 AND claimed_until < $2 ORDER BY id LIMIT 1{lock}) \
             AND claimed_until < $2 RETURNING id, build_id, channel, attempts"
        );
        let row = sqlx::query(&sql)
            .bind(now + CLAIM_MS)
            .bind(now)
            .bind(MAX_ATTEMPTS)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Due {
                id: r.try_get("id")?,
                build_id: r.try_get("build_id")?,
                channel: r.try_get("channel")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .transpose()
    }

    pub async fn delivered(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE outbox SET delivered = $1, last_error = NULL WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Releases a failed delivery for a later attempt.
    pub async fn retry_later(&self, due: &Due, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET next_try = $1, claimed_until = 0, last_error = $2 WHERE id = $3",
        )
        .bind(now_ms() + backoff_ms(due.attempts))
        .bind(error)
        .bind(due.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(5), 16_000);
        assert_eq!(backoff_ms(39), 15 * 60_000);
    }
}
