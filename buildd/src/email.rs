//! Email on terminal states: one plain-text mail per build that succeeded,
//! failed or was canceled, sent over SMTP (optionally upgraded with
//! STARTTLS, rustls with the webpki roots, and authenticated) through the
//! outbox's `email` channel, so a mail server that is down or answers 4xx
//! is retried like a webhook receiver. The subject names the build and its
//! state (`streamfs build 42 failed`); the body says what was built, where
//! it went and why it ended.

use std::path::Path;

use anyhow::{Context, Result, bail};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::db::Build;

/// Where and to whom mails go.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    relay: String,
}

/// The mail settings of `streamfs-buildd serve`.
pub struct EmailSettings<'a> {
    /// `HOST:PORT` (`[::1]:25` for an IPv6 literal).
    pub relay: &'a str,
    pub from: &'a str,
    pub to: &'a [String],
    pub starttls: bool,
    /// A file with the user on its first line, the password on its second.
    pub auth_file: Option<&'a Path>,
    /// PEM certificates trusted besides the webpki roots.
    pub ca_file: Option<&'a Path>,
}

fn mailbox(what: &str, addr: &str) -> Result<Mailbox> {
    addr.parse()
        .with_context(|| format!("{what} {addr:?}: not an email address"))
}

impl Email {
    /// Checks the settings and builds the SMTP client (nothing is sent).
    pub fn new(s: &EmailSettings<'_>) -> Result<Email> {
        let (host, port) = s
            .relay
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_start_matches('[').trim_end_matches(']'),
                    p.parse::<u16>().ok()?,
                ))
            })
            .filter(|(h, _)| !h.is_empty())
            .with_context(|| format!("--smtp {:?}: expected HOST:PORT", s.relay))?;
        if s.to.is_empty() {
            bail!("--smtp: no recipient (--smtp-to ADDRESS)");
        }
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port);
        if s.starttls {
            let mut tls = TlsParameters::builder(host.to_string());
            if let Some(f) = s.ca_file {
                let pem = std::fs::read(f)
                    .with_context(|| format!("reading the SMTP CA file {}", f.display()))?;
                let not_pem = || format!("--smtp-ca {}: expected PEM certificates", f.display());
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    bail!(not_pem());
                }
                let ca = Certificate::from_pem(&pem).with_context(not_pem)?;
                tls = tls.add_root_certificate(ca);
            }
            let params = tls
                .build_rustls()
                .with_context(|| format!("--smtp-starttls: TLS for {host}"))?;
            b = b.tls(Tls::Required(params));
        }
        if let Some(f) = s.auth_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the SMTP credentials {}", f.display()))?;
            let mut lines = text.lines();
            let (Some(user), Some(password)) = (lines.next(), lines.next()) else {
                bail!(
                    "{}: expected the SMTP user on the first line and its password on the second",
                    f.display()
                );
            };
            b = b.credentials(Credentials::new(user.to_string(), password.to_string()));
        }
        Ok(Email {
            transport: b.build(),
            from: mailbox("--smtp-from", s.from)?,
            to: s
                .to
                .iter()
                .map(|t| mailbox("--smtp-to", t))
                .collect::<Result<_>>()?,
            relay: s.relay.to_string(),
        })
    }

    /// Sends the mail of `b`; Ok once the server accepted it (250).
    pub async fn send(&self, b: &Build) -> Result<()> {
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(format!("streamfs build {} {}", b.id, b.state));
        for to in &self.to {
            m = m.to(to.clone());
        }
        let msg = m.body(body(b)).context("composing the mail")?;
        // lettre's errors name their cause in their own text: kept as the
        // source too, every log line would repeat it.
        self.transport
            .send(msg)
            .await
            .map_err(|e| anyhow::anyhow!("SMTP {}: {e}", self.relay))?;
        Ok(())
    }
}

/// The mail's text: what was built, where it went, why it ended.
fn body(b: &Build) -> String {
    let mut t = format!(
        "Build {} {}.\n\narch:     {}\nrelease:  {}\nversion:  {}\nstream:   {}\nsource:   {}\n",
        b.id, b.state, b.arch, b.release, b.version, b.stream, b.source
    );
    if let Some(w) = &b.worker {
        t.push_str(&format!("worker:   {w}\n"));
    }
    if let Some(r) = &b.reason {
        t.push_str(&format!("reason:   {r}\n"));
    }
    for v in b.artifacts["versions"].as_array().into_iter().flatten() {
        t.push_str(&format!("inserted: {}\n", v.as_str().unwrap_or_default()));
    }
    t
}
