//! The testbed inventory, a JSON list as rhubarbe's template: per node its
//! `cmc` card, its `control` interface (where the agent listens, whose MAC
//! names the PXE link) and optionally `data`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub hostname: String,
    pub ip: IpAddr,
    pub mac: String,
    /// A port of this node only, over `[nodes] agent_port` (control) or
    /// `cmc_port` (cmc): for nodes sharing one address, as in tests.
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub cmc: Interface,
    pub control: Interface,
    #[serde(default)]
    pub data: Option<Interface>,
}

impl Node {
    /// The file pxelinux looks for first for this node:
    /// `01-<mac with dashes>` (01 is the ARP type of Ethernet).
    pub fn pxe_link_name(&self) -> String {
        format!(
            "01-{}",
            self.control.mac.to_ascii_lowercase().replace(':', "-")
        )
    }
}

#[derive(Clone, Debug)]
pub struct Inventory {
    file: PathBuf,
    nodes: Vec<Node>,
}

impl Inventory {
    pub fn load(file: &Path) -> Result<Inventory> {
        let text = std::fs::read_to_string(file)
            .map_err(Error::io(format!("reading inventory {}", file.display())))?;
        Inventory::parse(file, &text)
    }

    /// Strict JSON (the template's `#` comments and trailing comma must
    /// go), every MAC well formed, hostnames unique.
    pub fn parse(file: &Path, text: &str) -> Result<Inventory> {
        let err = |reason: String| Error::Inventory {
            file: file.to_path_buf(),
            reason,
        };
        let nodes: Vec<Node> = serde_json::from_str(text).map_err(|e| {
            err(format!(
                "not a JSON list of {{cmc, control, data}} entries: {e}"
            ))
        })?;
        for (i, n) in nodes.iter().enumerate() {
            for (what, itf) in [
                ("cmc", Some(&n.cmc)),
                ("control", Some(&n.control)),
                ("data", n.data.as_ref()),
            ] {
                if let Some(itf) = itf
                    && !valid_mac(&itf.mac)
                {
                    return Err(err(format!(
                        "entry {i} ({}): {what}.mac {:?} is not a MAC address",
                        n.control.hostname, itf.mac
                    )));
                }
            }
            if nodes[..i]
                .iter()
                .any(|m| m.control.hostname == n.control.hostname)
            {
                return Err(err(format!(
                    "entry {i}: hostname {} listed twice",
                    n.control.hostname
                )));
            }
        }
        Ok(Inventory {
            file: file.to_path_buf(),
            nodes,
        })
    }

    /// The entry of the node whose control hostname is `name`.
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.control.hostname == name)
            .ok_or_else(|| Error::Inventory {
                file: self.file.clone(),
                reason: format!("no node {name} in the inventory"),
            })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"[{"cmc": {"hostname": "reboot01", "ip": "192.168.1.1", "mac": "02:00:00:00:00:01"},
        "control": {"hostname": "fit01", "ip": "192.168.3.1", "mac": "00:03:1D:0e:03:19"}}]"#;

    #[test]
    fn a_node_is_found_and_names_its_pxe_link() {
        let inv = Inventory::parse(Path::new("inv.json"), ONE).unwrap();
        let n = inv.node("fit01").unwrap();
        assert_eq!(n.pxe_link_name(), "01-00-03-1d-0e-03-19");
        let e = inv.node("fit02").unwrap_err().to_string();
        assert_eq!(e, "inv.json: no node fit02 in the inventory");
    }

    #[test]
    fn the_shipped_template_is_refused_with_a_reason() {
        let e = Inventory::parse(Path::new("t.json"), "[ # comment\n]").unwrap_err();
        assert!(e.to_string().starts_with("t.json: not a JSON list"), "{e}");
        let bad = ONE.replace("02:00:00:00:00:01", "02:00:00");
        let e = Inventory::parse(Path::new("t.json"), &bad).unwrap_err();
        assert!(e.to_string().contains("cmc.mac \"02:00:00\""), "{e}");
    }
}
