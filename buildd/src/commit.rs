//! The artifact commit of a build, and its recovery after a server died in
//! it.
//!
//! Once a build's intake reaches the store commit it can no longer be
//! canceled nor lose its worker (`committing` is set); a server that dies
//! (SIGKILL, host gone) right then would leave it `running` for ever. So
//! `committing` is a lease, not a flag: the deadline (ms) until which the
//! committing server answers for the build, extended every third of the
//! lease while the commit runs. The file list the commit inserts is kept
//! beside it (`commit_files`). When the deadline has passed, any server
//! sharing the database (on start-up and in its lease sweep) takes the
//! build over and looks in the store, under the store's writer lock (so no
//! commit is half done): when the build's version is in the stream with the
//! artifacts' sha256, the commit landed and the build succeeded; otherwise
//! nothing of it reached the stream, and it is queued again as a lost
//! worker is (failing after `--max-losses`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use serde_json::json;
use sqlx::Row;
use streamfs_core::store::Store;

use crate::db::{Db, now_ms};
use crate::intake::{self, FileEntry};
use crate::server::App;

/// Why a build whose commit did not land is queued again (or failed).
const NOT_LANDED: &str =
    "the server stopped while committing its artifacts and the commit did not land";

/// A build whose committing server stopped answering for it.
pub struct Stale {
    pub id: i64,
    pub stream: String,
    pub version: String,
    pub deadline: i64,
    pub files: Vec<FileEntry>,
}

impl Db {
    /// The point of no return of a build's intake: true when it is still
    /// running for `worker` (not canceled, not re-queued); from now until
    /// the commit is over it can be neither canceled nor lose its lease,
    /// and `files` are what a recovery looks for in the store.
    pub async fn begin_commit(
        &self,
        id: i64,
        worker: &str,
        files: &[FileEntry],
        lease_ms: i64,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE builds SET committing = $1, commit_files = $2 \
             WHERE id = $3 AND worker = $4 AND state = 'running'",
        )
        .bind(now_ms() + lease_ms)
        .bind(serde_json::to_string(files)?)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Extends the commit lease of a build this server is committing.
    pub async fn extend_commit(&self, id: i64, lease_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE builds SET committing = $1 WHERE id = $2 AND committing > 0 AND state = 'running'",
        )
        .bind(now_ms() + lease_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// True while a commit of the build's artifacts is under way or was
    /// cut short and not yet recovered.
    pub async fn is_committing(&self, id: i64) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM builds WHERE id = $1 AND state = 'running' AND committing > 0",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Running builds whose commit lease ran out.
    pub async fn stale_commits(&self) -> Result<Vec<Stale>> {
        let rows = sqlx::query(
            "SELECT id, stream, version, committing, commit_files FROM builds \
             WHERE state = 'running' AND committing > 0 AND committing < $1 ORDER BY id",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let files: Option<String> = r.try_get("commit_files")?;
                Ok(Stale {
                    id: r.try_get("id")?,
                    stream: r.try_get("stream")?,
                    version: r.try_get("version")?,
                    deadline: r.try_get("committing")?,
                    // A database from before `commit_files`: nothing to
                    // look for, so the commit counts as not landed.
                    files: files
                        .and_then(|f| serde_json::from_str(&f).ok())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Takes a stale commit over (one server wins when several sweep).
    async fn take_commit(&self, s: &Stale, lease_ms: i64) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE builds SET committing = $1 WHERE id = $2 AND committing = $3 AND state = 'running'",
        )
        .bind(now_ms() + lease_ms)
        .bind(s.id)
        .bind(s.deadline)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// A recovered commit that landed: the build succeeded.
    async fn commit_landed(&self, id: i64, artifacts: &serde_json::Value) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE builds SET state = 'succeeded', percent = 100, finished = $1, artifacts = $2, \
             committing = 0 WHERE id = $3 AND state = 'running' AND committing > 0",
        )
        .bind(now_ms())
        .bind(artifacts.to_string())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if done {
            let reason =
                "the server stopped after committing its artifacts; found them in the stream";
            self.event(id, "state", json!({"state": "succeeded", "reason": reason}))
                .await?;
        }
        Ok(done)
    }

    /// A recovered commit that did not land: queued again, or failed once
    /// the build was lost `max_losses` times. Returns its arch when queued.
    async fn commit_lost(&self, id: i64, max_losses: i64) -> Result<Option<String>> {
        let failed = sqlx::query(
            "UPDATE builds SET state = 'failed', losses = losses + 1, finished = $1, reason = $2, \
             committing = 0, commit_files = NULL \
             WHERE id = $3 AND state = 'running' AND committing > 0 AND losses + 1 >= $4",
        )
        .bind(now_ms())
        .bind(NOT_LANDED)
        .bind(id)
        .bind(max_losses)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if failed {
            self.event(
                id,
                "state",
                json!({"state": "failed", "reason": NOT_LANDED}),
            )
            .await?;
            return Ok(None);
        }
        let row = sqlx::query(
            "UPDATE builds SET state = 'queued', losses = losses + 1, worker = NULL, stage = NULL, \
             percent = 0, committing = 0, commit_files = NULL \
             WHERE id = $1 AND state = 'running' AND committing > 0 RETURNING arch",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        self.event(
            id,
            "state",
            json!({"state": "queued", "reason": format!("{NOT_LANDED}: queued again")}),
        )
        .await?;
        let arch: String = row.try_get("arch")?;
        self.notify_queue(&arch).await?;
        Ok(Some(arch))
    }
}

/// The versions (`product version`) of `stream` that hold the build's
/// artifacts, when its commit landed: items of version `version` at the
/// build's paths, each with the build's sha256 (and at least one). `None`
/// when the stream does not have them. Read under the store's writer lock,
/// so a commit another server is making is either whole or absent.
pub fn landed(
    store_dir: &Path,
    stream: &str,
    version: &str,
    files: &[FileEntry],
) -> std::result::Result<Option<Vec<String>>, String> {
    let want: BTreeMap<&str, String> = files
        .iter()
        .filter(|f| !f.path.starts_with("streams/"))
        .map(|f| (f.path.as_str(), f.sha256.to_ascii_lowercase()))
        .collect();
    let store = Store::open(store_dir).map_err(|e| e.to_string())?;
    let txn = store.begin().map_err(|e| e.to_string())?;
    let state = txn.stream(stream).map_err(|e| e.to_string())?;
    let mut versions = BTreeSet::new();
    for item in state.products.items().filter(|i| i.version == version) {
        let Some(sha) = item.path().and_then(|p| want.get(p)) else {
            continue;
        };
        if item.sha256().map(str::to_ascii_lowercase).as_ref() != Some(sha) {
            return Ok(None);
        }
        versions.insert(format!("{} {}", item.product, item.version));
    }
    Ok((!versions.is_empty()).then(|| versions.into_iter().collect()))
}

/// Recovers every build whose committing server stopped answering for it
/// (see the module's doc); called from the lease sweep. True when a build
/// was queued again.
pub async fn recover(app: &App) -> Result<bool> {
    let lease = app.settings.lease.as_millis() as i64;
    let mut requeued = false;
    for stale in app.db.stale_commits().await? {
        if !app.db.take_commit(&stale, lease).await? {
            continue;
        }
        let id = stale.id;
        let store = app.settings.store.clone();
        let look = tokio::task::spawn_blocking(move || {
            landed(&store, &stale.stream, &stale.version, &stale.files).map(|v| (v, stale.files))
        })
        .await?;
        match look {
            Ok((Some(versions), files)) => {
                tracing::warn!(
                    "build {id}: its server stopped after the commit; {} in the stream: succeeded",
                    versions.join(", ")
                );
                let artifacts = json!({"files": files, "versions": versions});
                app.db.commit_landed(id, &artifacts).await?;
            }
            Ok((None, _)) => {
                tracing::warn!("build {id}: {NOT_LANDED}");
                requeued |= app
                    .db
                    .commit_lost(id, app.settings.max_losses)
                    .await?
                    .is_some();
            }
            // The store cannot be read now: left for a later sweep (the
            // lease taken above runs out again).
            Err(e) => {
                tracing::warn!("build {id}: checking its interrupted commit: {e}");
                continue;
            }
        }
        intake::remove_job_dir(&app.settings.store, id);
        app.events.notify_waiters();
    }
    Ok(requeued)
}

/// Keeps extending build `id`'s commit lease until dropped (the commit
/// itself runs on a blocking thread).
pub fn keep_leased(app: &App, id: i64) -> tokio::task::JoinHandle<()> {
    let app = app.clone();
    tokio::spawn(async move {
        let lease = app.settings.lease;
        let mut tick = tokio::time::interval(lease / 3);
        loop {
            tick.tick().await;
            if let Err(e) = app.db.extend_commit(id, lease.as_millis() as i64).await {
                tracing::warn!("build {id}: extending its commit lease: {e:#}");
            }
        }
    })
}

/// Test-only: `STREAMFS_BUILDD_TEST_STOP=before-commit|after-commit` makes
/// the server stop for good (until killed) at that point of a build's
/// intake, with the store locked and `committing` set (before), or with the
/// commit made but the build not yet marked succeeded (after), so a test can
/// SIGKILL it exactly there. Unset in any real deployment.
pub fn test_stop(point: &str, id: i64) {
    if std::env::var("STREAMFS_BUILDD_TEST_STOP").is_ok_and(|p| p == point) {
        tracing::warn!("test stop: build {id} {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
