//! The nodes' CMC cards, over HTTP: `GET http://<cmc ip>[:port]/<verb>`
//! answers `on`, `off`, `ok` or details (`info`).

use std::time::Duration;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Status,
    On,
    Off,
    Reset,
    Info,
}

impl Verb {
    pub fn path(self) -> &'static str {
        match self {
            Verb::Status => "status",
            Verb::On => "on",
            Verb::Off => "off",
            Verb::Reset => "reset",
            Verb::Info => "info",
        }
    }
}

pub struct Cmc {
    client: reqwest::blocking::Client,
}

impl Cmc {
    pub fn new(timeout: Duration) -> Result<Cmc> {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| Error::Image {
                what: "CMC client".into(),
                reason: e.to_string(),
            })?;
        Ok(Cmc { client })
    }

    /// Sends `verb` to the CMC at `base` (`http://ip[:port]`); its answer,
    /// trimmed.
    pub fn call(&self, base: &str, verb: Verb) -> Result<String> {
        let url = format!("{base}/{}", verb.path());
        let fail = |reason: String| Error::Image {
            what: format!("CMC {url}"),
            reason,
        };
        let resp = self
            .client
            .get(&url)
            .send()
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let text = resp.text().map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}: {}", text.trim())));
        }
        Ok(text.trim().to_string())
    }
}

/// The CMC's base URL: its inventory address and `[nodes] cmc_port`.
pub fn base_url(ip: std::net::IpAddr, port: Option<u16>) -> String {
    let host = match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    match port {
        Some(p) => format!("http://{host}:{p}"),
        None => format!("http://{host}"),
    }
}
