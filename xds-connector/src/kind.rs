//! The four resource types the connector serves, as a small enum indexing per-type arrays.
//!
//! `Kind::ALL` is in push order for additions (the same order as
//! [`sluice_common::xds::TYPES`]); removals are pushed the other way round.

use sluice_common::xds::TYPES;

/// One resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Clusters = 0,
    Endpoints = 1,
    Routes = 2,
    Listeners = 3,
}

/// A value per resource type, indexed by `Kind as usize`.
pub type PerKind<T> = [T; 4];

impl Kind {
    /// Every kind, in [`TYPES`] order.
    pub const ALL: [Kind; 4] = [
        Kind::Clusters,
        Kind::Endpoints,
        Kind::Routes,
        Kind::Listeners,
    ];

    /// The type URL of this kind.
    pub fn url(self) -> &'static str {
        TYPES[self as usize]
    }

    /// The kind of a type URL, `None` for a URL the connector does not serve.
    pub fn from_url(url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.url() == url)
    }

    /// Short name for logs.
    pub fn short(self) -> &'static str {
        match self {
            Kind::Clusters => "clusters",
            Kind::Endpoints => "endpoints",
            Kind::Routes => "routes",
            Kind::Listeners => "listeners",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_urls() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_url(k.url()), Some(k));
            assert_eq!(TYPES[k as usize], k.url());
        }
        assert_eq!(Kind::from_url("type.example/Unknown"), None);
        assert_eq!(Kind::from_url(""), None);
    }
}
