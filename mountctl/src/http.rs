//! The HTTP client behind http(s) sources: one small blocking GET, so the
//! core stays free of an HTTP stack.

use std::sync::OnceLock;
use std::time::Duration;

use streamfs_core::streams::query::HttpGet;
use streamfs_core::{Error, Result};

/// A lazily built client: commands that never touch the network never pay
/// for TLS setup.
#[derive(Default)]
pub struct Http {
    client: OnceLock<reqwest::blocking::Client>,
}

fn http_error(url: &str, reason: impl std::fmt::Display) -> Error {
    Error::io(url, std::io::Error::other(reason.to_string()))
}

impl Http {
    fn client(&self, url: &str) -> Result<&reqwest::blocking::Client> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("mountctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| http_error(url, e))?;
        Ok(self.client.get_or_init(|| client))
    }
}

impl HttpGet for Http {
    fn get(&self, url: &str) -> Result<Option<Vec<u8>>> {
        tracing::debug!(url, "GET");
        let resp = self
            .client(url)?
            .get(url)
            .send()
            .map_err(|e| http_error(url, e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(http_error(url, format!("HTTP {status}")));
        }
        let body = resp.bytes().map_err(|e| http_error(url, e))?;
        Ok(Some(body.to_vec()))
    }
}
