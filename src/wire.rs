//! The API's wire types that its server (`api`, with the platform) and its clients outside the platform (an edge
//! host's [`Central`](crate::Central)) both speak: one definition each, written by the one and read by the other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dyno::{AppSpec, ReleaseSpec, Scale};

/// `GET /apps/{app}/current-release`: what an edge host following a server runs for an app, read together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CurrentRelease {
    pub app: CurrentApp,
    /// `None` while the app has no release that succeeded.
    pub release: Option<CurrentVersion>,
    /// Process type → how many dynos of which size.
    #[serde(default)]
    pub formation: BTreeMap<String, ProcessScale>,
}

/// The app's part of a [`CurrentRelease`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CurrentApp {
    pub name: String,
    #[serde(default)]
    pub maintenance: bool,
    #[serde(default)]
    pub sleep: bool,
}

/// The release's part of a [`CurrentRelease`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CurrentVersion {
    pub version: u64,
    /// The slug's sha256; `None` for an app never built.
    pub slug: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// One process type of a formation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessScale {
    pub quantity: u32,
    /// A dyno size name (`standard-1x`); one an edge host does not know runs at the default size.
    pub size: String,
}

impl CurrentRelease {
    /// What a [`Source`](crate::Source) holds for the app: its spec and, when it has one, its release with the
    /// formation.
    pub(crate) fn into_specs(self) -> (AppSpec, Option<ReleaseSpec>) {
        let mut app = AppSpec::new(self.app.name);
        app.maintenance = self.app.maintenance;
        app.sleep = self.app.sleep;
        let formation = self.formation;
        let release = self.release.map(|r| {
            let mut release = ReleaseSpec::new(r.version, String::new());
            release.slug = r.slug;
            release.config = r.config;
            release.formation = formation
                .into_iter()
                .map(|(kind, entry)| {
                    let size = entry.size.parse().unwrap_or_default();
                    (kind, Scale::new(entry.quantity, size))
                })
                .collect();
            release
        });
        (app, release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_current_release_reads_as_source_specs() {
        let json = r#"{"app":{"name":"far","maintenance":true},"release":{"version":3,"slug":"ab","config":{"A":"1"}},
                       "formation":{"web":{"quantity":2,"size":"standard-2x"},"worker":{"quantity":1,"size":"huge"}}}"#;
        let current: CurrentRelease = serde_json::from_str(json).unwrap();
        let (app, release) = current.clone().into_specs();
        assert!(app.maintenance && !app.sleep);
        let release = release.unwrap();
        assert_eq!((release.version, release.slug.as_deref()), (3, Some("ab")));
        assert_eq!(release.config["A"], "1");
        assert_eq!(release.formation["web"].quantity, 2);
        assert_eq!(
            release.formation["web"].size,
            crate::runtime::DynoSize::Standard2X
        );
        assert_eq!(
            release.formation["worker"].size,
            crate::runtime::DynoSize::default()
        );
        let again: CurrentRelease =
            serde_json::from_str(&serde_json::to_string(&current).unwrap()).unwrap();
        assert_eq!(again, current);
    }
}
