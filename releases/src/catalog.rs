//! Which releases a node holds and which one is live for each site: plain state transitions
//! (stage, commit, roll back, remove) with no I/O, and the JSON file they are kept in.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::manifest::{Manifest, Site};

/// Retired releases kept per site (for rollback and for pages pinned to them); older ones are
/// removed at the next commit.
pub const KEEP_RETIRED: usize = 4;

/// Where a release is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Every object is here and checked; not served yet.
    Staged,
    /// Served for its site.
    Live,
    /// Was live; still served to requests pinned to it, and a rollback target.
    Retired,
}

/// One release a node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub manifest: Manifest,
    pub phase: Phase,
    /// Milliseconds since the Unix epoch.
    pub staged_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<u64>,
    /// The release that was live for the site when this one was committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
}

/// Why a transition was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("no release {0} on this node")]
    Unknown(String),
    #[error("release {0} was already committed with other content; push under a new name")]
    Exists(String),
    #[error("release {name} is live for {site}; commit another release or roll it back first")]
    Live { name: String, site: Site },
    #[error("release {0} is not live, so there is nothing to roll back")]
    NotLive(String),
}

/// What a commit or rollback changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    pub site: String,
    /// Live now, if any.
    pub live: Option<String>,
    /// Live before, if any.
    pub was: Option<String>,
    /// Releases removed because more than [`KEEP_RETIRED`] were retired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
}

/// Every release of one node, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub releases: BTreeMap<String, Record>,
}

impl Catalog {
    /// The release live for `site`, if any.
    pub fn live(&self, site: &Site) -> Option<&str> {
        self.releases
            .iter()
            .find(|(_, r)| r.phase == Phase::Live && r.manifest.site == *site)
            .map(|(name, _)| name.as_str())
    }

    /// Holds `manifest` as release `name`, not yet served. Staging the same content again is
    /// a no-op; a staged release may be replaced; a committed one may not.
    pub fn stage(&mut self, name: &str, manifest: Manifest, now: u64) -> Result<(), Refused> {
        if let Some(existing) = self.releases.get(name)
            && existing.phase != Phase::Staged
        {
            return if existing.manifest == manifest {
                Ok(())
            } else {
                Err(Refused::Exists(name.to_owned()))
            };
        }
        self.releases.insert(
            name.to_owned(),
            Record {
                manifest,
                phase: Phase::Staged,
                staged_at: now,
                committed_at: None,
                replaced: None,
            },
        );
        Ok(())
    }

    /// Makes `name` the live release of its site; the one it replaces is retired. Committing
    /// the live release again changes nothing.
    pub fn commit(&mut self, name: &str, now: u64) -> Result<Switch, Refused> {
        let site = self.site_of(name)?;
        let was = self.live(&site).map(str::to_owned);
        if was.as_deref() == Some(name) {
            return Ok(Switch {
                site: site.to_string(),
                live: was.clone(),
                was,
                pruned: Vec::new(),
            });
        }
        if let Some(was) = &was {
            self.set_phase(was, Phase::Retired);
        }
        if let Some(record) = self.releases.get_mut(name) {
            record.phase = Phase::Live;
            record.committed_at = Some(now);
            record.replaced = was.clone();
        }
        let pruned = self.prune(&site);
        Ok(Switch {
            site: site.to_string(),
            live: Some(name.to_owned()),
            was,
            pruned,
        })
    }

    /// Takes the live release `name` off its site and puts back the one it replaced (if that
    /// is still held; else nothing is live for the site afterwards).
    pub fn rollback(&mut self, name: &str) -> Result<Switch, Refused> {
        let site = self.site_of(name)?;
        let record = &self.releases[name];
        if record.phase != Phase::Live {
            return Err(Refused::NotLive(name.to_owned()));
        }
        let back = record.replaced.clone().filter(|r| {
            self.releases
                .get(r)
                .is_some_and(|r| r.manifest.site == site && r.phase == Phase::Retired)
        });
        self.set_phase(name, Phase::Retired);
        if let Some(back) = &back {
            self.set_phase(back, Phase::Live);
        }
        Ok(Switch {
            site: site.to_string(),
            live: back,
            was: Some(name.to_owned()),
            pruned: Vec::new(),
        })
    }

    /// Forgets release `name`, unless it is live.
    pub fn remove(&mut self, name: &str) -> Result<(), Refused> {
        let site = self.site_of(name)?;
        if self.releases[name].phase == Phase::Live {
            return Err(Refused::Live {
                name: name.to_owned(),
                site,
            });
        }
        self.releases.remove(name);
        Ok(())
    }

    /// Every object some release refers to.
    pub fn referenced(&self) -> BTreeSet<Digest> {
        self.releases
            .values()
            .flat_map(|r| r.manifest.files.values().map(|f| f.digest))
            .collect()
    }

    fn site_of(&self, name: &str) -> Result<Site, Refused> {
        self.releases
            .get(name)
            .map(|r| r.manifest.site.clone())
            .ok_or_else(|| Refused::Unknown(name.to_owned()))
    }

    fn set_phase(&mut self, name: &str, phase: Phase) {
        if let Some(record) = self.releases.get_mut(name) {
            record.phase = phase;
        }
    }

    /// Removes the oldest retired releases of `site` beyond [`KEEP_RETIRED`].
    fn prune(&mut self, site: &Site) -> Vec<String> {
        let mut retired: Vec<(u64, String)> = self
            .releases
            .iter()
            .filter(|(_, r)| r.phase == Phase::Retired && r.manifest.site == *site)
            .map(|(name, r)| (r.committed_at.unwrap_or(r.staged_at), name.clone()))
            .collect();
        retired.sort();
        let excess = retired.len().saturating_sub(KEEP_RETIRED);
        let pruned: Vec<String> = retired.into_iter().take(excess).map(|(_, n)| n).collect();
        for name in &pruned {
            self.releases.remove(name);
        }
        pruned
    }

    /// Reads the catalog kept at `path`; a node that never held a release has none.
    pub fn load(path: &Path) -> io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error),
        }
    }

    /// The catalog as it is written by [`save`].
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Replaces the catalog file at `path` with `bytes`: a crash leaves the old or the new one.
pub fn save(path: &Path, bytes: &[u8]) -> io::Result<()> {
    outpost_server::files::replace(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FileEntry;

    fn manifest(prefix: &str, content: &str) -> Manifest {
        Manifest {
            site: Site {
                host: None,
                prefix: prefix.into(),
            },
            files: [(
                "index.html".to_owned(),
                FileEntry {
                    digest: Digest::of(content.as_bytes()),
                    size: content.len() as u64,
                    content_type: "text/html".into(),
                    cache_control: None,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn commit_retires_the_release_it_replaces_and_rollback_restores_it() {
        let mut catalog = Catalog::default();
        catalog.stage("r1", manifest("/", "one"), 1).unwrap();
        let site = manifest("/", "").site;
        assert_eq!(catalog.live(&site), None, "staged is not live");
        catalog.commit("r1", 2).unwrap();
        catalog.stage("r2", manifest("/", "two"), 3).unwrap();
        assert_eq!(
            catalog.live(&site),
            Some("r1"),
            "staging keeps the old one live"
        );
        let switch = catalog.commit("r2", 4).unwrap();
        assert_eq!(
            (switch.live.as_deref(), switch.was.as_deref()),
            (Some("r2"), Some("r1"))
        );
        assert_eq!(catalog.releases["r1"].phase, Phase::Retired);

        assert_eq!(
            catalog.remove("r2"),
            Err(Refused::Live {
                name: "r2".into(),
                site: site.clone()
            })
        );
        assert_eq!(catalog.rollback("r1"), Err(Refused::NotLive("r1".into())));
        let back = catalog.rollback("r2").unwrap();
        assert_eq!(back.live.as_deref(), Some("r1"));
        assert_eq!(catalog.live(&site), Some("r1"));
        catalog.remove("r2").unwrap();
        assert_eq!(catalog.referenced(), [Digest::of(b"one")].into());
        // r1 replaced nothing: rolling it back leaves the site without a release.
        assert_eq!(catalog.rollback("r1").unwrap().live, None);
        assert_eq!(catalog.live(&site), None);
    }

    #[test]
    fn rollback_never_makes_a_release_live_that_was_not_committed() {
        let mut catalog = Catalog::default();
        catalog.stage("r1", manifest("/", "one"), 1).unwrap();
        catalog.commit("r1", 2).unwrap();
        catalog.stage("r2", manifest("/", "two"), 3).unwrap();
        catalog.commit("r2", 4).unwrap();
        catalog.remove("r1").unwrap();
        catalog.stage("r1", manifest("/", "other"), 5).unwrap();
        assert_eq!(catalog.rollback("r2").unwrap().live, None);
        assert_eq!(catalog.releases["r1"].phase, Phase::Staged);
    }

    #[test]
    fn sites_switch_independently() {
        let mut catalog = Catalog::default();
        catalog.stage("docs", manifest("/docs/", "d"), 1).unwrap();
        catalog.stage("app", manifest("/app/", "a"), 1).unwrap();
        catalog.commit("docs", 2).unwrap();
        let switch = catalog.commit("app", 3).unwrap();
        assert_eq!(switch.was, None);
        assert_eq!(catalog.releases["docs"].phase, Phase::Live);
    }

    #[test]
    fn committed_content_cannot_be_replaced_under_the_same_name() {
        let mut catalog = Catalog::default();
        catalog.stage("r1", manifest("/", "one"), 1).unwrap();
        catalog.stage("r1", manifest("/", "uno"), 1).unwrap();
        catalog.commit("r1", 2).unwrap();
        assert_eq!(catalog.stage("r1", manifest("/", "uno"), 3), Ok(()));
        assert_eq!(
            catalog.stage("r1", manifest("/", "eins"), 3),
            Err(Refused::Exists("r1".into()))
        );
        assert_eq!(
            catalog.commit("nope", 3),
            Err(Refused::Unknown("nope".into()))
        );
    }

    #[test]
    fn only_the_newest_retired_releases_are_kept() {
        let mut catalog = Catalog::default();
        for n in 0..(KEEP_RETIRED + 3) {
            let name = format!("r{n}");
            catalog
                .stage(&name, manifest("/", &name), n as u64)
                .unwrap();
            catalog.commit(&name, n as u64).unwrap();
        }
        assert_eq!(catalog.releases.len(), KEEP_RETIRED + 1);
        assert!(!catalog.releases.contains_key("r0") && !catalog.releases.contains_key("r1"));
        assert!(catalog.releases.contains_key("r2"));
    }

    #[test]
    fn the_catalog_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        assert_eq!(Catalog::load(&path).unwrap(), Catalog::default());
        let mut catalog = Catalog::default();
        catalog.stage("r1", manifest("/", "one"), 1).unwrap();
        catalog.commit("r1", 2).unwrap();
        save(&path, &catalog.to_bytes()).unwrap();
        assert_eq!(Catalog::load(&path).unwrap(), catalog);
    }
}
