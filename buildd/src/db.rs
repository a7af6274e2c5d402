//! The one database layer: the same schema and statements on SQLite (one
//! host, a file in the store) and PostgreSQL (several servers sharing one
//! database). Queries are checked at run time (sqlx's `Any` driver), so no
//! database is needed to compile. Every state change is one statement, so
//! SQLite never upgrades a read transaction to a write one, and PostgreSQL
//! claims with `FOR UPDATE SKIP LOCKED` so concurrent servers never hand one
//! job to two workers.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Which database the pool talks to: the few statements that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    pub url: String,
}

/// Milliseconds since the epoch: the one time unit stored.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A build as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Build {
    pub id: i64,
    pub arch: String,
    pub release: String,
    pub version: String,
    pub source: String,
    pub stream: String,
    pub config: Option<String>,
    pub kernels: Option<Value>,
    pub state: String,
    pub stage: Option<String>,
    pub percent: i64,
    pub worker: Option<String>,
    pub losses: i64,
    pub reason: Option<String>,
    pub created: i64,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    pub artifacts: Value,
}

/// What a submitter asks for.
#[derive(Clone, Debug)]
pub struct NewBuild {
    pub arch: String,
    pub release: String,
    pub version: String,
    pub source: String,
    pub stream: String,
    pub config: Option<String>,
    pub kernels: Option<Value>,
}

/// One entry of a build's event log (state, progress or log line); its id
/// is the SSE event id clients resume from.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub data: Value,
}

pub const TERMINAL: [&str; 3] = ["succeeded", "failed", "canceled"];

const BUILD_COLUMNS: &str = "id, arch, release, version, source, stream, config, kernels, state, \
     stage, percent, worker, losses, reason, created, started, finished, artifacts";

fn schema(backend: Backend) -> Vec<String> {
    let serial = match backend {
        Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS builds (id {serial}, arch TEXT NOT NULL, release TEXT NOT NULL, \
             version TEXT NOT NULL, source TEXT NOT NULL, stream TEXT NOT NULL, config TEXT, kernels TEXT, \
             state TEXT NOT NULL, stage TEXT, percent BIGINT NOT NULL DEFAULT 0, worker TEXT, \
             lease_until BIGINT NOT NULL DEFAULT 0, losses BIGINT NOT NULL DEFAULT 0, reason TEXT, \
             created BIGINT NOT NULL, started BIGINT, finished BIGINT, artifacts TEXT NOT NULL DEFAULT '[]', \
             notified BIGINT NOT NULL DEFAULT 0, committing BIGINT NOT NULL DEFAULT 0, commit_files TEXT)"
        ),
        // Databases made before these columns existed (the error when they
        // do is ignored).
        "ALTER TABLE builds ADD COLUMN committing BIGINT NOT NULL DEFAULT 0".into(),
        "ALTER TABLE builds ADD COLUMN commit_files TEXT".into(),
        "CREATE INDEX IF NOT EXISTS builds_queue ON builds (state, arch, id)".into(),
        format!(
            "CREATE TABLE IF NOT EXISTS events (id {serial}, build_id BIGINT NOT NULL, kind TEXT NOT NULL, \
             data TEXT NOT NULL)"
        ),
        "CREATE INDEX IF NOT EXISTS events_build ON events (build_id, id)".into(),
        format!(
            "CREATE TABLE IF NOT EXISTS outbox (id {serial}, build_id BIGINT NOT NULL, channel TEXT NOT NULL, \
             attempts BIGINT NOT NULL DEFAULT 0, next_try BIGINT NOT NULL, claimed_until BIGINT NOT NULL DEFAULT 0, \
             delivered BIGINT, last_error TEXT, UNIQUE (build_id, channel))"
        ),
        "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered, next_try)".into(),
        "CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, role TEXT NOT NULL, created BIGINT NOT NULL)"
            .into(),
        "CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, arch TEXT NOT NULL, capacity BIGINT NOT NULL, \
         token_hash TEXT NOT NULL, last_seen BIGINT NOT NULL)"
            .into(),
    ]
}

fn build_from(row: &AnyRow) -> Result<Build> {
    let kernels: Option<String> = row.try_get("kernels")?;
    let artifacts: String = row.try_get("artifacts")?;
    Ok(Build {
        id: row.try_get("id")?,
        arch: row.try_get("arch")?,
        release: row.try_get("release")?,
        version: row.try_get("version")?,
        source: row.try_get("source")?,
        stream: row.try_get("stream")?,
        config: row.try_get("config")?,
        kernels: kernels.and_then(|k| serde_json::from_str(&k).ok()),
        state: row.try_get("state")?,
        stage: row.try_get("stage")?,
        percent: row.try_get("percent")?,
        worker: row.try_get("worker")?,
        losses: row.try_get("losses")?,
        reason: row.try_get("reason")?,
        created: row.try_get("created")?,
        started: row.try_get("started")?,
        finished: row.try_get("finished")?,
        artifacts: serde_json::from_str(&artifacts).unwrap_or(Value::Null),
    })
}

impl Db {
    /// Connects (`sqlite:PATH` or `postgres://…`), creating the SQLite file
    /// and the schema when missing.
    pub async fn open(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let (backend, conn_url) = if let Some(path) = url.strip_prefix("sqlite:") {
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            anyhow::bail!("--db {url}: expected sqlite:PATH or postgres://…");
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .connect(&conn_url)
            .await
            .with_context(|| format!("connecting to the database {url}"))?;
        if backend == Backend::Sqlite {
            // WAL: readers (listings, SSE) never wait for the writer.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        let db = Db {
            pool,
            backend,
            url: url.to_string(),
        };
        for stmt in schema(backend) {
            if stmt.starts_with("ALTER TABLE") {
                let _ = sqlx::query(&stmt).execute(&db.pool).await;
                continue;
            }
            if backend == Backend::Postgres {
                // Two servers starting together may race on CREATE … IF NOT
                // EXISTS (a unique violation on the catalog): the loser
                // checks again.
                if let Err(e) = sqlx::query(&stmt).execute(&db.pool).await {
                    sqlx::query(&stmt)
                        .execute(&db.pool)
                        .await
                        .with_context(|| format!("creating the schema: {e}"))?;
                }
            } else {
                sqlx::query(&stmt).execute(&db.pool).await?;
            }
        }
        Ok(db)
    }

    pub async fn add_token(&self, hash: &str, role: &str) -> Result<()> {
        sqlx::query("INSERT INTO tokens (hash, role, created) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(role)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn token_role(&self, hash: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT role FROM tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>("role")))
    }

    pub async fn submit(&self, b: &NewBuild) -> Result<i64> {
        let kernels = b.kernels.as_ref().map(Value::to_string);
        let row = sqlx::query(
            "INSERT INTO builds (arch, release, version, source, stream, config, kernels, state, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8) RETURNING id",
        )
        .bind(&b.arch)
        .bind(&b.release)
        .bind(&b.version)
        .bind(&b.source)
        .bind(&b.stream)
        .bind(b.config.clone())
        .bind(kernels)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        let id: i64 = row.try_get("id")?;
        self.event(id, "state", json!({"state": "queued"})).await?;
        self.notify_queue(&b.arch).await?;
        Ok(id)
    }

    /// Wakes servers long-polling for this arch (PostgreSQL's NOTIFY reaches
    /// every server sharing the database; SQLite has one server, woken
    /// in-process by the caller).
    pub async fn notify_queue(&self, arch: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify('streamfs_buildd_jobs', $1)")
                .bind(arch)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub async fn get(&self, id: i64) -> Result<Option<Build>> {
        let row = sqlx::query(&format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(build_from).transpose()
    }

    /// One page of builds, newest first: at most `limit` with an id below
    /// `before` (all when `None`), and the cursor of the next page (the
    /// last id returned) when older ones remain. One row more than the page
    /// is read to know; the primary key orders and bounds the scan.
    pub async fn list(
        &self,
        state: Option<&str>,
        arch: Option<&str>,
        limit: i64,
        before: Option<i64>,
    ) -> Result<(Vec<Build>, Option<i64>)> {
        let rows = sqlx::query(&format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE ($1 = '' OR state = $1) AND ($2 = '' OR arch = $2) \
             AND id < $3 ORDER BY id DESC LIMIT $4"
        ))
        .bind(state.unwrap_or(""))
        .bind(arch.unwrap_or(""))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut builds = rows.iter().map(build_from).collect::<Result<Vec<_>>>()?;
        let more = builds.len() as i64 > limit;
        builds.truncate(usize::try_from(limit).unwrap_or(0));
        let next = if more {
            builds.last().map(|b| b.id)
        } else {
            None
        };
        Ok((builds, next))
    }

    pub async fn event(&self, build: i64, kind: &str, data: Value) -> Result<()> {
        sqlx::query("INSERT INTO events (build_id, kind, data) VALUES ($1, $2, $3)")
            .bind(build)
            .bind(kind)
            .bind(data.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn events_after(&self, build: i64, after: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT id, kind, data FROM events WHERE build_id = $1 AND id > $2 ORDER BY id LIMIT 1000",
        )
        .bind(build)
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let data: String = r.try_get("data")?;
                Ok(Event {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                })
            })
            .collect()
    }

    /// Log lines from line `offset` on.
    pub async fn log_lines(&self, build: i64, offset: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT data FROM events WHERE build_id = $1 AND kind = 'log' ORDER BY id LIMIT 100000 OFFSET $2",
        )
        .bind(build)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let data: String = r.try_get("data")?;
                let v: Value = serde_json::from_str(&data)?;
                Ok(v["line"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }

    /// Sets a terminal or queued state from one of `from`; true when it
    /// changed (another server or the worker may have got there first).
    pub async fn set_state(
        &self,
        id: i64,
        from: &[&str],
        to: &str,
        reason: Option<&str>,
    ) -> Result<bool> {
        self.set_state_where(id, from, to, reason, "").await
    }

    /// Cancels a queued or running build unless its artifacts are being
    /// committed to the store (then the commit decides: too late).
    pub async fn cancel(&self, id: i64) -> Result<bool> {
        self.set_state_where(
            id,
            &["queued", "running"],
            "canceled",
            Some("canceled by request"),
            " AND committing = 0",
        )
        .await
    }

    pub(crate) async fn set_state_where(
        &self,
        id: i64,
        from: &[&str],
        to: &str,
        reason: Option<&str>,
        extra: &str,
    ) -> Result<bool> {
        let finished = TERMINAL.contains(&to).then(now_ms);
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "UPDATE builds SET state = $1, reason = $2, finished = $3 WHERE id = ${} AND state IN ({}){extra}",
            from.len() + 4,
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(to).bind(reason).bind(finished);
        for f in from {
            q = q.bind(*f);
        }
        let done = q.bind(id).execute(&self.pool).await?.rows_affected() == 1;
        if done {
            self.event(id, "state", json!({"state": to, "reason": reason}))
                .await?;
        }
        Ok(done)
    }

    pub async fn register_worker(
        &self,
        id: &str,
        arch: &str,
        capacity: i64,
        token_hash: &str,
    ) -> Result<bool> {
        // A worker id belongs to the token that first registered it.
        if let Some(row) = sqlx::query("SELECT token_hash FROM workers WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        {
            if row.get::<String, _>("token_hash") != token_hash {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE workers SET arch = $1, capacity = $2, last_seen = $3 WHERE id = $4",
            )
            .bind(arch)
            .bind(capacity)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO workers (id, arch, capacity, token_hash, last_seen) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(arch)
            .bind(capacity)
            .bind(token_hash)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        }
        Ok(true)
    }

    /// The worker's arch when `token_hash` owns worker `id`.
    pub async fn worker_arch(&self, id: &str, token_hash: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT arch FROM workers WHERE id = $1 AND token_hash = $2")
            .bind(id)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>("arch")))
    }

    /// Extends the leases of the worker's running builds; returns the ids
    /// of its builds that are no longer running for it (canceled, or
    /// re-queued after its lease ran out): it must stop them.
    pub async fn heartbeat(
        &self,
        worker: &str,
        running: &[i64],
        lease_ms: i64,
    ) -> Result<Vec<i64>> {
        let now = now_ms();
        sqlx::query("UPDATE workers SET last_seen = $1 WHERE id = $2")
            .bind(now)
            .bind(worker)
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE builds SET lease_until = $1 WHERE worker = $2 AND state = 'running'")
            .bind(now + lease_ms)
            .bind(worker)
            .execute(&self.pool)
            .await?;
        let mut stop = Vec::new();
        for id in running {
            if !self.owns_running(*id, worker).await? {
                stop.push(*id);
            }
        }
        Ok(stop)
    }

    pub async fn owns_running(&self, id: i64, worker: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM builds WHERE id = $1 AND worker = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Claims the oldest queued build of `arch` for `worker`, FIFO.
    pub async fn claim(&self, worker: &str, arch: &str, lease_ms: i64) -> Result<Option<Build>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let now = now_ms();
        let sql = format!(
            "UPDATE builds SET state = 'running', worker = $1, lease_until = $2, started = $3, \
             stage = NULL, percent = 0, committing = 0, commit_files = NULL \
             WHERE id = (SELECT id FROM builds WHERE state = 'queued' AND arch = $4 ORDER BY id LIMIT 1{lock}) \
             AND state = 'queued' RETURNING {BUILD_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(worker)
            .bind(now + lease_ms)
            .bind(now)
            .bind(arch)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let b = build_from(&row)?;
        self.event(b.id, "state", json!({"state": "running", "worker": worker}))
            .await?;
        Ok(Some(b))
    }

    pub async fn progress(&self, id: i64, stage: Option<&str>, percent: Option<i64>) -> Result<()> {
        sqlx::query(
            "UPDATE builds SET stage = COALESCE($1, stage), percent = COALESCE($2, percent) WHERE id = $3",
        )
        .bind(stage)
        .bind(percent)
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.event(id, "progress", json!({"stage": stage, "percent": percent}))
            .await
    }

    /// Marks a running build succeeded with its artifacts.
    pub async fn succeed(&self, id: i64, worker: &str, artifacts: &Value) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE builds SET state = 'succeeded', percent = 100, finished = $1, artifacts = $2 \
             WHERE id = $3 AND worker = $4 AND state = 'running'",
        )
        .bind(now_ms())
        .bind(artifacts.to_string())
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if done {
            self.event(id, "state", json!({"state": "succeeded"}))
                .await?;
        }
        Ok(done)
    }

    /// Running builds whose lease ran out: re-queued, or failed once they
    /// lost their worker `max_losses` times. Returns the re-queued arches.
    pub async fn expire_leases(&self, max_losses: i64) -> Result<Vec<String>> {
        let now = now_ms();
        let failed = sqlx::query(
            "UPDATE builds SET state = 'failed', losses = losses + 1, finished = $1, \
             reason = 'lost its worker ' || CAST(losses + 1 AS TEXT) || ' times' \
             WHERE state = 'running' AND committing = 0 AND lease_until < $1 AND losses + 1 >= $2 \
             RETURNING id, reason",
        )
        .bind(now)
        .bind(max_losses)
        .fetch_all(&self.pool)
        .await?;
        for r in &failed {
            let reason: String = r.try_get("reason")?;
            self.event(
                r.try_get("id")?,
                "state",
                json!({"state": "failed", "reason": reason}),
            )
            .await?;
        }
        let requeued = sqlx::query(
            "UPDATE builds SET state = 'queued', losses = losses + 1, worker = NULL, stage = NULL, percent = 0 \
             WHERE state = 'running' AND committing = 0 AND lease_until < $1 RETURNING id, arch, losses",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut arches = Vec::new();
        for r in &requeued {
            let losses: i64 = r.try_get("losses")?;
            self.event(
                r.try_get("id")?,
                "state",
                json!({"state": "queued", "reason": format!("lost its worker ({losses} so far)")}),
            )
            .await?;
            let arch: String = r.try_get("arch")?;
            self.notify_queue(&arch).await?;
            arches.push(arch);
        }
        Ok(arches)
    }
}
