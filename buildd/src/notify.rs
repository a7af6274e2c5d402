//! Notifications on terminal states: a webhook POST of the build as JSON,
//! signed with HMAC-SHA256 of the body under a shared secret
//! (`X-Streamfs-Signature: sha256=<hex>`). Each build is notified once,
//! by whichever server sharing the database takes it first.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

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

pub async fn loop_(app: App) {
    let Some(hook) = &app.settings.webhook else {
        return;
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tick.tick().await;
        let builds = match app.db.take_unnotified().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("notifications: {e:#}");
                continue;
            }
        };
        for b in builds {
            let body = serde_json::to_vec(&b).expect("a build serializes");
            let sig = signature(&hook.secret, &body);
            let mut sent = false;
            for attempt in 0..3u32 {
                let r = client
                    .post(&hook.url)
                    .header("content-type", "application/json")
                    .header("x-streamfs-signature", &sig)
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        sent = true;
                        break;
                    }
                    Ok(resp) => {
                        tracing::warn!("webhook for build {}: HTTP {}", b.id, resp.status())
                    }
                    Err(e) => tracing::warn!("webhook for build {}: {e}", b.id),
                }
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            if !sent {
                tracing::error!("webhook for build {} ({}) not delivered", b.id, b.state);
            }
        }
    }
}
