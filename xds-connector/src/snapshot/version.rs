//! Per-type versions: one integer per resource type, bumped by one exactly when that type's
//! content changes, never otherwise. Shown and sent as decimal strings.

use std::collections::BTreeMap;

use crate::kind::{Kind, PerKind};

/// The version of each type, indexed by [`Kind`].
pub type Versions = PerKind<u64>;

/// The versions after a change: `versions` with each changed type bumped by one.
pub fn bump(versions: Versions, changed: PerKind<bool>) -> Versions {
    let mut next = versions;
    for k in Kind::ALL {
        if changed[k as usize] {
            next[k as usize] += 1;
        }
    }
    next
}

/// Type URL → version string (the JSON form).
pub fn to_strings(versions: &Versions) -> BTreeMap<String, String> {
    Kind::ALL
        .into_iter()
        .map(|k| (k.url().to_string(), versions[k as usize].to_string()))
        .collect()
}

/// Parses the JSON form; a missing type is version 0, anything else must be a decimal integer
/// of a known type URL.
pub fn from_strings(map: &BTreeMap<String, String>) -> Result<Versions, String> {
    let mut out = [0u64; 4];
    for (url, v) in map {
        let kind = Kind::from_url(url).ok_or_else(|| format!("unknown type URL `{url}`"))?;
        out[kind as usize] = v
            .parse()
            .map_err(|_| format!("version `{v}` of `{url}` is not an integer"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_types_are_bumped() {
        let v = [3, 7, 1, 1];
        assert_eq!(bump(v, [false, true, false, false]), [3, 8, 1, 1]);
        assert_eq!(bump(v, [true, true, true, true]), [4, 8, 2, 2]);
        assert_eq!(bump(v, [false; 4]), v);
    }

    #[test]
    fn versions_round_trip_as_strings() {
        let v = [12, 0, 5, 1];
        let s = to_strings(&v);
        assert_eq!(s[Kind::Clusters.url()], "12");
        assert_eq!(from_strings(&s), Ok(v));
        assert_eq!(from_strings(&BTreeMap::new()), Ok([0; 4]));
        let mut bad = s.clone();
        bad.insert(Kind::Routes.url().into(), "x1".into());
        assert!(from_strings(&bad).expect_err("not a number").contains("x1"));
        let mut bad = s;
        bad.insert("type.example/Other".into(), "1".into());
        assert!(from_strings(&bad).is_err());
    }
}
