//! The releases a node serves from, as one immutable value swapped in whole on every commit
//! or rollback, so a request sees one release or the other, never a mixture.

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::{Catalog, Phase};
use crate::manifest::{FileEntry, Site};

/// A release a node serves from.
#[derive(Debug)]
pub struct Release {
    pub name: String,
    pub site: Site,
    pub files: HashMap<String, FileEntry>,
}

/// The answer for one request.
#[derive(Debug)]
pub struct Routed<'a> {
    pub release: &'a Arc<Release>,
    /// `None`: the path is in the release's site but the release has no such file.
    pub file: Option<&'a FileEntry>,
}

/// Live releases (most specific site first) and every committed release still held, by name,
/// for requests pinned to one.
#[derive(Debug, Default)]
pub struct LiveTable {
    live: Vec<Arc<Release>>,
    held: HashMap<String, Arc<Release>>,
}

impl LiveTable {
    pub fn from_catalog(catalog: &Catalog) -> Self {
        let mut table = Self::default();
        for (name, record) in &catalog.releases {
            if record.phase == Phase::Staged {
                continue;
            }
            let release = Arc::new(Release {
                name: name.clone(),
                site: record.manifest.site.clone(),
                files: record
                    .manifest
                    .files
                    .iter()
                    .map(|(path, entry)| (path.clone(), entry.clone()))
                    .collect(),
            });
            if record.phase == Phase::Live {
                table.live.push(release.clone());
            }
            table.held.insert(name.clone(), release);
        }
        // A host's own site before every-host sites, a longer prefix before a shorter one.
        table.live.sort_by_key(|r| {
            (
                r.site.host.is_none(),
                std::cmp::Reverse(r.site.prefix.len()),
            )
        });
        table
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The release and file for a request to `host` and `path` (normal forms, `path`
    /// percent-decoded), pinned to release `pin` if the request names one this node holds for
    /// that site. `None`: no release covers the path and the request goes on to the cache.
    pub fn route(&self, host: &str, path: &str, pin: Option<&str>) -> Option<Routed<'_>> {
        let release = pin
            .and_then(|name| self.held.get(name))
            .filter(|r| r.site.contains(host, path))
            .or_else(|| self.live.iter().find(|r| r.site.contains(host, path)))?;
        let mut relative = path[release.site.prefix.len()..].to_owned();
        if relative.is_empty() || relative.ends_with('/') {
            relative.push_str("index.html");
        }
        Some(Routed {
            release,
            file: release.files.get(&relative),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;
    use crate::manifest::Manifest;

    fn manifest(host: Option<&str>, prefix: &str, files: &[&str]) -> Manifest {
        Manifest {
            site: Site {
                host: host.map(str::to_owned),
                prefix: prefix.into(),
            },
            files: files
                .iter()
                .map(|f| {
                    (
                        f.to_string(),
                        FileEntry {
                            digest: Digest::of(f.as_bytes()),
                            size: 1,
                            content_type: "text/plain".into(),
                            cache_control: None,
                        },
                    )
                })
                .collect(),
        }
    }

    fn table() -> LiveTable {
        let mut catalog = Catalog::default();
        catalog
            .stage("all-1", manifest(None, "/", &["index.html", "a.css"]), 1)
            .unwrap();
        catalog.commit("all-1", 1).unwrap();
        catalog
            .stage("all-2", manifest(None, "/", &["index.html", "b.css"]), 2)
            .unwrap();
        catalog.commit("all-2", 2).unwrap();
        catalog
            .stage(
                "docs",
                manifest(Some("a.test"), "/docs/", &["index.html", "x/index.html"]),
                3,
            )
            .unwrap();
        catalog.commit("docs", 3).unwrap();
        catalog
            .stage("staged", manifest(None, "/", &["new.css"]), 4)
            .unwrap();
        LiveTable::from_catalog(&catalog)
    }

    fn routed(
        table: &LiveTable,
        host: &str,
        path: &str,
        pin: Option<&str>,
    ) -> Option<(String, bool)> {
        table
            .route(host, path, pin)
            .map(|r| (r.release.name.clone(), r.file.is_some()))
    }

    #[test]
    fn the_most_specific_live_site_answers() {
        let table = table();
        assert_eq!(
            routed(&table, "a.test", "/docs/", None),
            Some(("docs".into(), true))
        );
        assert_eq!(
            routed(&table, "a.test", "/docs/x/", None),
            Some(("docs".into(), true))
        );
        assert_eq!(
            routed(&table, "a.test", "/docs/y", None),
            Some(("docs".into(), false))
        );
        assert_eq!(
            routed(&table, "b.test", "/docs/", None),
            Some(("all-2".into(), false))
        );
        assert_eq!(
            routed(&table, "b.test", "/b.css", None),
            Some(("all-2".into(), true))
        );
        assert_eq!(
            routed(&table, "b.test", "/a.css", None),
            Some(("all-2".into(), false))
        );
    }

    #[test]
    fn a_pin_reaches_a_retired_release_but_never_a_staged_one() {
        let table = table();
        assert_eq!(
            routed(&table, "b.test", "/a.css", Some("all-1")),
            Some(("all-1".into(), true))
        );
        assert_eq!(
            routed(&table, "b.test", "/new.css", Some("staged")),
            Some(("all-2".into(), false))
        );
        // A pin to a release of another site is ignored.
        assert_eq!(
            routed(&table, "b.test", "/b.css", Some("docs")),
            Some(("all-2".into(), true))
        );
    }

    #[test]
    fn nothing_routes_without_a_live_site() {
        let mut catalog = Catalog::default();
        catalog
            .stage("docs", manifest(None, "/docs/", &["index.html"]), 1)
            .unwrap();
        catalog.commit("docs", 1).unwrap();
        let table = LiveTable::from_catalog(&catalog);
        assert!(table.route("a.test", "/other", None).is_none());
        assert!(LiveTable::default().is_empty());
    }
}
