//! Ubuntu release facts meph2 puts on every product (`release_codename`,
//! `release_title`, `support_eol`, `support_esm_eol`), from distro-info-data's
//! `ubuntu.csv` as meph2 gets them through python-distro-info. The host's copy
//! is preferred (it is updated with each new release); a copy of
//! distro-info-data 0.58+deb12u6 is built in for hosts without the package.

use serde_json::{Map, Value};

const BUILTIN: &str = include_str!("../data/ubuntu.csv");
const HOST: &str = "/usr/share/distro-info/ubuntu.csv";

#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseInfo {
    pub codename: String,
    pub release_codename: String,
    pub release_title: String,
    pub support_eol: String,
    pub support_esm_eol: String,
}

impl ReleaseInfo {
    /// The product attributes meph2's `release_common_tags` adds.
    pub fn tags(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "release_codename".into(),
            self.release_codename.clone().into(),
        );
        m.insert("release_title".into(), self.release_title.clone().into());
        m.insert("support_eol".into(), self.support_eol.clone().into());
        m.insert(
            "support_esm_eol".into(),
            self.support_esm_eol.clone().into(),
        );
        m
    }
}

/// Facts about `series` (`noble`), or None when distro-info does not know it
/// (meph2 then adds no release tags).
pub fn release_info(series: &str) -> Option<ReleaseInfo> {
    let host = std::fs::read_to_string(HOST).ok();
    host.as_deref()
        .and_then(|csv| find(csv, series))
        .or_else(|| find(BUILTIN, series))
}

fn find(csv: &str, series: &str) -> Option<ReleaseInfo> {
    csv.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split(',').collect();
        if f.get(2) != Some(&series) || f.len() < 6 {
            return None;
        }
        let eol = f[5].to_string();
        let esm = f
            .get(7)
            .filter(|s| !s.is_empty())
            .map_or(eol.clone(), |s| s.to_string());
        Some(ReleaseInfo {
            codename: series.to_string(),
            release_codename: f[1].to_string(),
            release_title: f[0].to_string(),
            support_eol: eol,
            support_esm_eol: esm,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_lts_and_interim_releases() {
        let n = find(BUILTIN, "noble").unwrap();
        assert_eq!(n.release_title, "24.04 LTS");
        assert_eq!(n.release_codename, "Noble Numbat");
        assert_eq!(
            (n.support_eol.as_str(), n.support_esm_eol.as_str()),
            ("2029-05-31", "2034-04-25")
        );
        let o = find(BUILTIN, "oracular").unwrap();
        assert_eq!(o.release_title, "24.10");
        assert_eq!(
            o.support_esm_eol, o.support_eol,
            "no ESM: meph2 repeats the EOL"
        );
        assert!(find(BUILTIN, "nosuch").is_none());
    }
}
