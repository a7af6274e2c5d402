//! The submitters' REST API: submit, list, show, events (SSE), log,
//! cancel, retry.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::db::{NewBuild, TERMINAL};
use crate::server::{ApiError, ApiResult, App, Submitter, json_body};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    arch: String,
    release: String,
    version: Option<String>,
    source: String,
    stream: String,
    config: Option<String>,
    kernels: Option<Vec<String>>,
}

/// A name that goes into paths and command lines: plain characters only.
fn check_word(what: &str, v: &str) -> ApiResult<()> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        && !v.starts_with('.')
        && !v.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{what} {v:?}: expected 1-64 characters of [A-Za-z0-9._+-], not starting with . or -"
        )))
    }
}

/// Today as YYYYMMDD, the default version.
fn today() -> String {
    let days = crate::db::now_ms() / 86_400_000;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

pub async fn submit(
    State(app): State<App>,
    _: Submitter,
    body: Result<Json<SubmitBody>, JsonRejection>,
) -> ApiResult<Response> {
    let b = json_body(body)?;
    check_word("arch", &b.arch)?;
    check_word("release", &b.release)?;
    check_word("stream", &b.stream)?;
    let version = b.version.unwrap_or_else(today);
    check_word("version", &version)?;
    for k in b.kernels.iter().flatten() {
        check_word("kernel", k)?;
    }
    if b.source.is_empty() || b.source.len() > 4096 || b.source.contains('\n') {
        return Err(ApiError::bad(
            "source: expected a path or URL of at most 4096 bytes on one line",
        ));
    }
    if b.config
        .as_ref()
        .is_some_and(|c| c.len() > 4096 || c.contains('\n'))
    {
        return Err(ApiError::bad(
            "config: expected a path of at most 4096 bytes on one line",
        ));
    }
    let store = app.settings.store.clone();
    let stream = b.stream.clone();
    let known = tokio::task::spawn_blocking(move || {
        streamfs_core::store::Store::open(&store).map(|s| s.config().stream(&stream).is_ok())
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))?
    .map_err(|e| anyhow::anyhow!(e))?;
    if !known {
        return Err(ApiError::bad(format!(
            "stream {}: the store has no such stream",
            b.stream
        )));
    }
    let id = app
        .db
        .submit(&NewBuild {
            arch: b.arch,
            release: b.release,
            version,
            source: b.source,
            stream: b.stream,
            config: b.config,
            kernels: b.kernels.map(|k| json!(k)),
        })
        .await?;
    app.queue.notify_waiters();
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    arch: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// The page size when the client names none, and the largest it may ask.
const PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

/// A page of builds, newest first: `{"builds": […], "next": ID|null}`;
/// `next` is the `before` of the following page, null on the last one.
pub async fn list(
    State(app): State<App>,
    _: Submitter,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(s) = &q.state
        && !["queued", "running", "succeeded", "failed", "canceled"].contains(&s.as_str())
    {
        return Err(ApiError::bad(format!(
            "state {s:?}: expected queued, running, succeeded, failed or canceled"
        )));
    }
    let limit = match &q.limit {
        None => PAGE,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "limit {l:?}: expected a page size from 1 to {MAX_PAGE}"
                ))
            })?,
    };
    let before = match &q.before {
        None => None,
        Some(b) => Some(b.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad(format!(
                "before {b:?}: expected a build id (a positive integer), as in the last page's next"
            ))
        })?),
    };
    let (builds, next) = app
        .db
        .list(q.state.as_deref(), q.arch.as_deref(), limit, before)
        .await?;
    Ok(Json(json!({"builds": builds, "next": next})))
}

pub async fn show(
    State(app): State<App>,
    _: Submitter,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let b = app.db.get(id).await?.ok_or(ApiError::not_found(id))?;
    Ok(Json(serde_json::to_value(b).map_err(anyhow::Error::from)?))
}

#[derive(Deserialize)]
pub struct LogQuery {
    offset: Option<i64>,
}

pub async fn log(
    State(app): State<App>,
    _: Submitter,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    app.db.get(id).await?.ok_or(ApiError::not_found(id))?;
    let offset = q.offset.unwrap_or(0).max(0);
    let lines = app.db.log_lines(id, offset).await?;
    let next = offset + lines.len() as i64;
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    Ok((
        [
            ("content-type", "text/plain; charset=utf-8".to_string()),
            ("x-next-offset", next.to_string()),
        ],
        text,
    )
        .into_response())
}

/// SSE: every event of the build after `Last-Event-ID` (or from the start),
/// then new ones as they come; the stream ends after the terminal state.
pub async fn events(
    State(app): State<App>,
    _: Submitter,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    app.db.get(id).await?.ok_or(ApiError::not_found(id))?;
    let mut last: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let stream = async_stream::stream! {
        loop {
            // Register for wakeups before reading, so no event slips between.
            let woken = app.events.notified();
            let batch = match app.db.events_after(id, last).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("events of build {id}: {e:#}");
                    break;
                }
            };
            let mut done = false;
            for e in batch {
                last = e.id;
                if e.kind == "state" && e.data["state"].as_str().is_some_and(|s| TERMINAL.contains(&s)) {
                    done = true;
                }
                yield Ok::<_, Infallible>(SseEvent::default().id(e.id.to_string()).event(e.kind).data(e.data.to_string()));
            }
            if done {
                break;
            }
            // Another server sharing the database does not wake us: poll too.
            let _ = tokio::time::timeout(Duration::from_millis(500), woken).await;
        }
    };
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

pub async fn cancel(
    State(app): State<App>,
    _: Submitter,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    app.db.get(id).await?.ok_or(ApiError::not_found(id))?;
    if !app.db.cancel(id).await? {
        let b = app.db.get(id).await?.ok_or(ApiError::not_found(id))?;
        let why = if b.state == "running" {
            format!(
                "build {id} is committing its artifacts into stream {}: too late to cancel",
                b.stream
            )
        } else {
            format!(
                "build {id} is {}: only queued or running builds can be canceled",
                b.state
            )
        };
        return Err(ApiError(StatusCode::CONFLICT, why));
    }
    // Blobs the worker uploaded for it are of no use now (an intake under
    // way works on its own links to them and cleans up after itself).
    crate::intake::remove_blobs(&app.settings.store, id);
    app.events.notify_waiters();
    Ok(Json(json!({"id": id, "state": "canceled"})))
}

/// A failed or canceled build submitted again as a new build (the old one
/// keeps its log and reason).
pub async fn retry(
    State(app): State<App>,
    _: Submitter,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let b = app.db.get(id).await?.ok_or(ApiError::not_found(id))?;
    if !["failed", "canceled"].contains(&b.state.as_str()) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "build {id} is {}: only failed or canceled builds can be retried",
                b.state
            ),
        ));
    }
    let new = app
        .db
        .submit(&NewBuild {
            arch: b.arch,
            release: b.release,
            version: b.version,
            source: b.source,
            stream: b.stream,
            config: b.config,
            kernels: b.kernels,
        })
        .await?;
    app.queue.notify_waiters();
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": new, "retry_of": id})),
    )
        .into_response())
}
