//! The server: shared state, authentication, the router, and the
//! background loops (lease expiry, PostgreSQL wakeups, notifications).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::db::Db;
use crate::{api, notify, web, worker_api};

pub struct Settings {
    pub store: PathBuf,
    pub lease: Duration,
    pub max_losses: i64,
    pub max_blob: u64,
    pub webhook: Option<notify::Webhook>,
    pub email: Option<crate::email::Email>,
}

pub struct AppState {
    pub db: Db,
    pub settings: Settings,
    /// Woken when a job may have become claimable.
    pub queue: Notify,
    /// Woken when a build got a new event.
    pub events: Notify,
}

pub type App = Arc<AppState>;

/// An API error: a status and a message naming what was wrong.
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn not_found(id: i64) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, format!("build {id}: no such build"))
    }
}

/// A JSON body or a 400 naming what was wrong with it (axum answers 422 for
/// a body that parses but does not fit; clients are told 400 for both), or
/// 413 for one over the size limit.
pub fn json_body<T>(
    body: Result<axum::Json<T>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<T> {
    body.map(|axum::Json(b)| b).map_err(|e| {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, format!("request body: {}", e.body_text()))
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        tracing::error!("{e:#}");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// The hash a token is stored under.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A caller holding a submit token.
pub struct Submitter;

/// A caller holding a worker token (its hash binds the worker ids it
/// registered).
pub struct WorkerToken(pub String);

async fn role_of(parts: &Parts, app: &App) -> ApiResult<(String, String)> {
    let unauthorized = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or unknown token (Authorization: Bearer TOKEN)".into(),
        )
    };
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let token = header.strip_prefix("Bearer ").ok_or_else(unauthorized)?;
    let hash = token_hash(token);
    let role = app.db.token_role(&hash).await?.ok_or_else(unauthorized)?;
    Ok((role, hash))
}

impl FromRequestParts<App> for Submitter {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> ApiResult<Self> {
        match role_of(parts, app).await? {
            (role, _) if role == "submit" => Ok(Submitter),
            _ => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "this token is not a submit token".into(),
            )),
        }
    }
}

impl FromRequestParts<App> for WorkerToken {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> ApiResult<Self> {
        match role_of(parts, app).await? {
            (role, hash) if role == "worker" => Ok(WorkerToken(hash)),
            _ => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "this token is not a worker token".into(),
            )),
        }
    }
}

pub fn router(app: App) -> Router {
    let max_blob = usize::try_from(app.settings.max_blob).unwrap_or(usize::MAX);
    Router::new()
        .route("/", get(web::index))
        .route("/api/openapi.json", get(web::openapi))
        .route("/api/v1/builds", post(api::submit).get(api::list))
        .route("/api/v1/builds/{id}", get(api::show))
        .route("/api/v1/builds/{id}/events", get(api::events))
        .route("/api/v1/builds/{id}/log", get(api::log))
        .route("/api/v1/builds/{id}/cancel", post(api::cancel))
        .route("/api/v1/builds/{id}/retry", post(api::retry))
        .route("/api/worker/register", post(worker_api::register))
        .route("/api/worker/heartbeat", post(worker_api::heartbeat))
        .route("/api/worker/claim", post(worker_api::claim))
        .route("/api/worker/jobs/{id}/progress", post(worker_api::progress))
        .route("/api/worker/jobs/{id}/missing", post(worker_api::missing))
        .route(
            "/api/worker/jobs/{id}/blobs/{sha}",
            put(worker_api::upload).layer(DefaultBodyLimit::max(max_blob)),
        )
        .route("/api/worker/jobs/{id}/finish", post(worker_api::finish))
        // JSON bodies: 1 MiB is plenty; larger ones get 413.
        .layer(DefaultBodyLimit::max(1 << 20))
        .with_state(app)
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn serve(db: Db, settings: Settings, listen: &str) -> Result<()> {
    let app = Arc::new(AppState {
        db,
        settings,
        queue: Notify::new(),
        events: Notify::new(),
    });
    std::fs::create_dir_all(crate::intake::jobs_dir(&app.settings.store))
        .context("creating the build service's directory in the store")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(
        "streamfs-buildd listening on http://{}",
        listener.local_addr()?
    );
    tokio::spawn(lease_loop(app.clone()));
    tokio::spawn(notify::loop_(app.clone()));
    if app.db.backend == crate::db::Backend::Postgres {
        tokio::spawn(pg_listen(app.clone()));
    }
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Re-queues builds whose worker stopped heartbeating, and recovers those
/// whose server stopped in their artifact commit ([`crate::commit`]); the
/// first sweep runs at start-up.
async fn lease_loop(app: App) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        match crate::commit::recover(&app).await {
            Ok(true) => app.queue.notify_waiters(),
            Ok(false) => {}
            Err(e) => tracing::warn!("recovering interrupted commits: {e:#}"),
        }
        match app.db.expire_leases(app.settings.max_losses).await {
            Ok(arches) if !arches.is_empty() => {
                app.queue.notify_waiters();
                app.events.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("expiring leases: {e:#}"),
        }
    }
}

/// PostgreSQL: jobs submitted through another server wake this one's
/// long-polling workers at once.
async fn pg_listen(app: App) {
    loop {
        let listener = sqlx::postgres::PgListener::connect(&app.db.url).await;
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("LISTEN: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen("streamfs_buildd_jobs").await {
            tracing::warn!("LISTEN: {e}");
            continue;
        }
        while listener.recv().await.is_ok() {
            app.queue.notify_waiters();
            app.events.notify_waiters();
        }
    }
}
