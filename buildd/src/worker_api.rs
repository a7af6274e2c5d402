//! The workers' API: register, heartbeat, claim (long poll), progress,
//! artifact upload (only blobs the pool lacks, verified on arrival) and
//! finish. A worker names itself in `X-Streamfs-Worker`; the id belongs to
//! the worker token that registered it, and a worker touches only the
//! builds it claimed.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::intake::{self, FileEntry};
use crate::server::{ApiError, ApiResult, App, WorkerToken, json_body};

/// The registered worker this request comes from, and its arch.
async fn worker_of(
    app: &App,
    token: &WorkerToken,
    headers: &HeaderMap,
) -> ApiResult<(String, String)> {
    let id = headers
        .get("x-streamfs-worker")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad("missing X-Streamfs-Worker header"))?
        .to_string();
    match app.db.worker_arch(&id, &token.0).await? {
        Some(arch) => Ok((id, arch)),
        None => Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("worker {id} is not registered with this token"),
        )),
    }
}

/// The build `id` when `worker` runs it.
async fn own_job(app: &App, worker: &str, id: i64) -> ApiResult<()> {
    if app.db.owns_running(id, worker).await? {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "build {id} is not running on worker {worker} (canceled, re-queued or not yours): stop it"
            ),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    id: String,
    arch: String,
    capacity: i64,
}

pub async fn register(
    State(app): State<App>,
    token: WorkerToken,
    body: Result<Json<RegisterBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let b = json_body(body)?;
    let word = |v: &str| {
        !v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !word(&b.id) || !word(&b.arch) || !(1..=256).contains(&b.capacity) {
        return Err(ApiError::bad(
            "register: id and arch are 1-64 characters of [A-Za-z0-9._-], capacity 1-256",
        ));
    }
    if !app
        .db
        .register_worker(&b.id, &b.arch, b.capacity, &token.0)
        .await?
    {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("worker id {} belongs to another token", b.id),
        ));
    }
    Ok(Json(json!({
        "lease_ms": app.settings.lease.as_millis() as i64,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    running: Vec<i64>,
}

pub async fn heartbeat(
    State(app): State<App>,
    token: WorkerToken,
    headers: HeaderMap,
    body: Result<Json<HeartbeatBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let b = json_body(body)?;
    let (worker, _) = worker_of(&app, &token, &headers).await?;
    let stop = app
        .db
        .heartbeat(&worker, &b.running, app.settings.lease.as_millis() as i64)
        .await?;
    Ok(Json(json!({"stop": stop})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    wait_ms: Option<u64>,
}

/// Hands the oldest queued build of the worker's arch, waiting up to
/// `wait_ms` (at most 60 s) for one: 200 with the build, or 204.
pub async fn claim(
    State(app): State<App>,
    token: WorkerToken,
    headers: HeaderMap,
    body: Result<Json<ClaimBody>, JsonRejection>,
) -> ApiResult<Response> {
    let b = json_body(body)?;
    let (worker, arch) = worker_of(&app, &token, &headers).await?;
    let wait = Duration::from_millis(b.wait_ms.unwrap_or(20_000).min(60_000));
    let deadline = tokio::time::Instant::now() + wait;
    let lease = app.settings.lease.as_millis() as i64;
    loop {
        let woken = app.queue.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Some(build) = app.db.claim(&worker, &arch, lease).await? {
            app.events.notify_waiters();
            return Ok(Json(build).into_response());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Woken by a submit here or a NOTIFY from another server; the
        // timeout only covers a lost notification.
        let _ = tokio::time::timeout((deadline - now).min(Duration::from_secs(2)), woken).await;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    stage: Option<String>,
    percent: Option<i64>,
    #[serde(default)]
    lines: Vec<String>,
}

pub async fn progress(
    State(app): State<App>,
    token: WorkerToken,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<ProgressBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let b = json_body(body)?;
    let (worker, _) = worker_of(&app, &token, &headers).await?;
    own_job(&app, &worker, id).await?;
    if b.percent.is_some_and(|p| !(0..=100).contains(&p)) {
        return Err(ApiError::bad("percent: expected 0-100"));
    }
    for line in &b.lines {
        app.db.event(id, "log", json!({"line": line})).await?;
    }
    if b.stage.is_some() || b.percent.is_some() {
        app.db.progress(id, b.stage.as_deref(), b.percent).await?;
    }
    app.events.notify_waiters();
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesBody {
    files: Vec<FileEntry>,
}

/// Which of the build's output blobs the server lacks (neither in the pool
/// nor uploaded for this build yet).
pub async fn missing(
    State(app): State<App>,
    token: WorkerToken,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<FilesBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let b = json_body(body)?;
    let (worker, _) = worker_of(&app, &token, &headers).await?;
    own_job(&app, &worker, id).await?;
    intake::check_files(&b.files).map_err(ApiError::bad)?;
    let missing = intake::missing(&app.settings.store, id, &b.files);
    Ok(Json(json!({"missing": missing})))
}

/// One blob, named by its sha256, streamed to disk and verified; a
/// mismatch is refused (400) and nothing is kept.
pub async fn upload(
    State(app): State<App>,
    token: WorkerToken,
    headers: HeaderMap,
    Path((id, sha)): Path<(i64, String)>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let (worker, _) = worker_of(&app, &token, &headers).await?;
    own_job(&app, &worker, id).await?;
    if !streamfs_core::store::pool::valid_sha(&sha) {
        return Err(ApiError::bad(format!("{sha}: not a lowercase sha256")));
    }
    let mut upload = intake::Upload::create(&app.settings.store, id, &sha)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"));
            if too_big || e.to_string().contains("length limit") {
                ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("blob {sha}: larger than the server accepts"),
                )
            } else {
                ApiError::bad(format!("blob {sha}: {e}"))
            }
        })?;
        upload.write(&chunk)?;
    }
    let size = upload.finish().map_err(ApiError::bad)?;
    Ok(Json(json!({"sha256": sha, "size": size})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishBody {
    result: String,
    reason: Option<String>,
    #[serde(default)]
    files: Vec<FileEntry>,
}

/// The build's end as the worker saw it. On success the output tree is
/// assembled from the uploaded blobs and inserted into the stream in one
/// commit; the build fails if that insert fails.
pub async fn finish(
    State(app): State<App>,
    token: WorkerToken,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<FinishBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let b = json_body(body)?;
    let (worker, _) = worker_of(&app, &token, &headers).await?;
    own_job(&app, &worker, id).await?;
    let result = match b.result.as_str() {
        "failed" => {
            let reason = b.reason.unwrap_or_else(|| "the build failed".into());
            app.db
                .set_state(id, &["running"], "failed", Some(&reason))
                .await?;
            json!({"state": "failed"})
        }
        "succeeded" => {
            intake::check_files(&b.files).map_err(ApiError::bad)?;
            // A finish sent again after a server died in the commit: the
            // recovery (crate::commit) decides, not a second insert.
            if app.db.is_committing(id).await? {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    format!(
                        "build {id}: a commit of its artifacts was cut short; the server checks whether it landed"
                    ),
                ));
            }
            let build = app.db.get(id).await?.ok_or(ApiError::not_found(id))?;
            app.db.progress(id, Some("intake"), None).await?;
            app.events.notify_waiters();
            let store = app.settings.store.clone();
            let files = b.files.clone();
            let (db, who, rt) = (
                app.db.clone(),
                worker.clone(),
                tokio::runtime::Handle::current(),
            );
            let lease = app.settings.lease.as_millis() as i64;
            let leased = crate::commit::keep_leased(&app, id);
            let inserted = tokio::task::spawn_blocking(move || {
                // Asked with the store locked, after everything was staged:
                // a cancel that came first wins and nothing lands.
                let mut may_commit = || match rt.block_on(db.begin_commit(id, &who, &files, lease))
                {
                    Ok(yes) => {
                        if yes {
                            crate::commit::test_stop("before-commit", id);
                        }
                        yes
                    }
                    Err(e) => {
                        tracing::warn!("build {id}: {e:#}");
                        false
                    }
                };
                let inserted = intake::insert(&store, id, &build.stream, &files, &mut may_commit);
                if matches!(inserted, Ok(Some(_))) {
                    crate::commit::test_stop("after-commit", id);
                }
                inserted
            })
            .await;
            leased.abort();
            let inserted = inserted.map_err(|e| anyhow::anyhow!(e))?;
            match inserted {
                Ok(Some(versions)) => {
                    let artifacts = json!({"files": b.files, "versions": versions});
                    app.db.succeed(id, &worker, &artifacts).await?;
                    json!({"state": "succeeded"})
                }
                Ok(None) => {
                    intake::remove_job_dir(&app.settings.store, id);
                    tracing::info!("build {id}: canceled during its intake; nothing inserted");
                    app.events.notify_waiters();
                    return Err(ApiError(
                        StatusCode::CONFLICT,
                        format!("build {id} was canceled during its intake: nothing was inserted"),
                    ));
                }
                Err(reason) => {
                    let reason = format!("inserting the artifacts: {reason}");
                    if !app
                        .db
                        .set_state(id, &["running"], "failed", Some(&reason))
                        .await?
                    {
                        intake::remove_job_dir(&app.settings.store, id);
                        tracing::info!("build {id}: canceled during its intake; {reason}");
                    }
                    json!({"state": "failed", "reason": reason})
                }
            }
        }
        other => {
            return Err(ApiError::bad(format!(
                "result {other:?}: expected succeeded or failed"
            )));
        }
    };
    intake::remove_job_dir(&app.settings.store, id);
    app.events.notify_waiters();
    Ok(Json(result))
}
