//! Notifications on terminal states: a webhook POST of the build as JSON,
//! signed with HMAC-SHA256 of the body under a shared secret
//! (`X-Streamfs-Signature: sha256=<hex>`), and an email ([`crate::email`]). Deliveries go through the
//! database's outbox ([`crate::outbox`]): marked delivered only after a
//! 2xx, retried with backoff otherwise, whichever server sharing the
//! database is up.

use std::time::Duration;

use anyhow::{Result, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::Build;
use crate::outbox::{Due, MAX_ATTEMPTS};
use crate::server::App;

pub struct Webhook {
    pub url: String,
    pub secret: Vec<u8>,
}

/// The signature header's value for `body`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The channels this server delivers to.
fn channels(app: &App) -> Vec<&'static str> {
    let mut c = Vec::new();
    if app.settings.webhook.is_some() {
        c.push("webhook");
    }
    if app.settings.email.is_some() {
        c.push("email");
    }
    c
}

pub async fn loop_(app: App) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let channels = channels(&app);
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tick.tick().await;
        if let Err(e) = app.db.enqueue_terminal(&channels).await {
            tracing::warn!("notifications: {e:#}");
            continue;
        }
        loop {
            let due = match app.db.claim_due().await {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("notifications: {e:#}");
                    break;
                }
            };
            let sent = match app.db.get(due.build_id).await {
                Ok(Some(b)) => deliver(&app, &client, &due, &b).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            let marked = match &sent {
                Ok(()) => app.db.delivered(due.id).await,
                Err(e) => {
                    if due.attempts >= MAX_ATTEMPTS {
                        tracing::error!(
                            "{} for build {}: giving up after {} attempts: {e:#}",
                            due.channel,
                            due.build_id,
                            due.attempts
                        );
                    } else {
                        tracing::warn!(
                            "{} for build {} (attempt {}): {e:#}; retrying later",
                            due.channel,
                            due.build_id,
                            due.attempts
                        );
                    }
                    app.db.retry_later(&due, &format!("{e:#}")).await
                }
            };
            if let Err(e) = marked {
                tracing::warn!("notifications: {e:#}");
            }
        }
    }
}

/// One delivery of `b` on `due`'s channel; Ok once the receiver accepted it.
async fn deliver(app: &App, client: &reqwest::Client, due: &Due, b: &Build) -> Result<()> {
    match due.channel.as_str() {
        "webhook" => {
            let Some(hook) = &app.settings.webhook else {
                bail!("no webhook configured on this server");
            };
            let body = serde_json::to_vec(b)?;
            let resp = client
                .post(&hook.url)
                .header("content-type", "application/json")
                .header("x-streamfs-signature", signature(&hook.secret, &body))
                .body(body)
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("{}: HTTP {}", hook.url, resp.status());
            }
            Ok(())
        }
        "email" => match &app.settings.email {
            Some(email) => email.send(b).await,
            None => bail!("no SMTP server configured on this server"),
        },
        other => bail!("unknown notification channel {other}"),
    }
}
