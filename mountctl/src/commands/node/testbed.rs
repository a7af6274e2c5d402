//! What the node commands share: the selected nodes with their inventory
//! entries, the key, the addresses of agents and CMCs, the logs.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use streamfs_node::cmc::{self, Cmc, Verb};
use streamfs_node::inventory::{Inventory, Node};
use streamfs_node::proto::Key;
use streamfs_node::settings::Settings;
use streamfs_node::transfer;

use super::{select, usage};
use crate::cli::NodeSelectArgs;

pub struct Target {
    pub name: String,
    pub node: Node,
    pub agent: String,
    pub cmc: String,
}

pub struct Testbed {
    pub settings: Settings,
    pub targets: Vec<Target>,
}

impl Testbed {
    /// Resolves the spec and finds every node in the inventory; any
    /// mistake is a usage error, raised before anything is touched.
    pub fn open(settings: Settings, a: &NodeSelectArgs) -> Result<Testbed> {
        let (naming, sel) = select(&settings, a)?;
        let names = sel.names(&naming);
        Testbed::with_names(settings, &names)
    }

    pub fn with_names(settings: Settings, names: &[String]) -> Result<Testbed> {
        if names.is_empty() {
            return Err(streamfs_core::Error::Usage("the node spec selects no node".into()).into());
        }
        let inv_path = settings.required("testbed", "inventory").map_err(usage)?;
        let inv = Inventory::load(std::path::Path::new(inv_path)).map_err(usage)?;
        let agent_port: u16 = settings
            .number("nodes", "agent_port")
            .map_err(usage)?
            .unwrap_or(7170);
        let cmc_port: Option<u16> = settings.number("nodes", "cmc_port").map_err(usage)?;
        let mut targets = Vec::new();
        for name in names {
            let node = inv.node(name).map_err(usage)?.clone();
            let port = node.control.port.unwrap_or(agent_port);
            let agent = std::net::SocketAddr::new(node.control.ip, port).to_string();
            let cmc = cmc::base_url(node.cmc.ip, node.cmc.port.or(cmc_port));
            targets.push(Target {
                name: name.clone(),
                node,
                agent,
                cmc,
            });
        }
        Ok(Testbed { settings, targets })
    }

    /// When `[leases] url` or `[leases] file` is set: the caller must hold
    /// the testbed now (root is exempt).
    pub fn check_lease(&self) -> Result<()> {
        use streamfs_node::leases::{self, Source};
        let from = match (
            self.settings.value("leases", "url"),
            self.settings.value("leases", "file"),
        ) {
            (Some(url), _) => Source::Url(url),
            (None, Some(file)) => Source::File(std::path::Path::new(file)),
            (None, None) => return Ok(()),
        };
        let (uid, login) = leases::caller().map_err(usage)?;
        leases::check(from, &login, uid, chrono::Utc::now()).map_err(usage)
    }

    pub fn key(&self) -> Result<Key> {
        let f = self.settings.required("nodes", "key_file").map_err(usage)?;
        Key::load(std::path::Path::new(f)).map_err(usage)
    }

    pub fn seconds(&self, given: Option<u64>, key: &str) -> Result<Duration> {
        let n = match given {
            Some(n) => n,
            None => self
                .settings
                .number("nodes", key)
                .map_err(usage)?
                .unwrap_or(60),
        };
        Ok(Duration::from_secs(n))
    }

    pub fn cmc(&self) -> Result<Cmc> {
        let t: f64 = self
            .settings
            .number("nodes", "cmc_default_timeout")
            .map_err(usage)?
            .unwrap_or(3.0);
        Ok(Cmc::new(Duration::from_secs_f64(t))?)
    }
}

/// Waits until the agent at `addr` answers, with backoff; the last error
/// when `deadline` passes first.
pub fn wait_agent(addr: &str, key: &Key, deadline: Instant) -> Result<(), String> {
    let mut pause = Duration::from_millis(100);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let err = match transfer::ping(
            addr,
            key,
            left.clamp(Duration::from_millis(100), Duration::from_secs(3)),
        ) {
            Ok(r) if r.ok => return Ok(()),
            Ok(r) => r.error.unwrap_or_else(|| "not ready".into()),
            Err(e) => e.to_string(),
        };
        if Instant::now() + pause >= deadline {
            return Err(format!("no answer from the agent at {addr}: {err}"));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// A log per node, in `[nodes] log_dir/<run>/<node>.log`, kept after the
/// run (frisbee's logs were lost with the process).
pub struct Logs {
    pub dir: PathBuf,
}

impl Logs {
    pub fn new(settings: &Settings, what: &str) -> Result<Logs> {
        let base = settings.required("nodes", "log_dir").map_err(usage)?;
        let run = format!(
            "{}-{what}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            std::process::id()
        );
        let dir = PathBuf::from(base).join(run);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating log directory {}", dir.display()))?;
        Ok(Logs { dir })
    }

    pub fn line(&self, node: &str, text: &str) {
        let p = self.dir.join(format!("{node}.log"));
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = writeln!(f, "{} {text}", chrono::Utc::now().to_rfc3339());
        }
    }
}

/// Sends `verb` to every CMC in parallel; per node, its answer or error.
pub fn cmc_all(tb: &Testbed, verb: Verb) -> Result<Vec<(String, Result<String, String>)>> {
    let cmc = tb.cmc()?;
    let out = std::thread::scope(|s| {
        let hs: Vec<_> = tb
            .targets
            .iter()
            .map(|t| {
                let cmc = &cmc;
                s.spawn(move || {
                    (
                        t.name.clone(),
                        cmc.call(&t.cmc, verb).map_err(|e| e.to_string()),
                    )
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("CMC thread"))
            .collect()
    });
    Ok(out)
}
