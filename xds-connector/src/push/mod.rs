//! Push order: the sequence of responses that takes one client from what it was last sent to
//! the current snapshot without ever leaving it with a route to a cluster it does not have.
//!
//! For a client that was sent `old` and must reach `new`:
//! 1. clusters, then endpoints, as the UNION of `old` and `new` (a name in both takes `new`'s
//!    value) — sent only if that differs from `old`;
//! 2. routes, then listeners, exactly as `new` — sent only if different from `old`;
//! 3. endpoints, then clusters, exactly as `new` — sent only if different from the union,
//!    i.e. only when something was removed. Removals go in reverse type order (endpoints
//!    before their cluster), so at every step each load assignment names a cluster the client
//!    has and each route names a cluster the client has.
//!
//! A type the client has not subscribed to is skipped; a type whose content is unchanged is
//! never re-sent. The planner is pure: the stream task sends the steps in order.

use std::sync::Arc;

use crate::kind::{Kind, PerKind};
use crate::snapshot::wire::TypeSet;

/// One response to send: `kind` with exactly `resources`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: Kind,
    pub resources: Arc<TypeSet>,
}

/// The responses that take a client from `sent` to `target`, in order. `sent[k]` is what the
/// client was last sent for type `k`, `None` when it has not subscribed to `k`.
pub fn plan(sent: &PerKind<Option<Arc<TypeSet>>>, target: &PerKind<Arc<TypeSet>>) -> Vec<Step> {
    let mut steps = Vec::new();
    // What the client holds after each step, per type.
    let mut holds = sent.clone();

    for kind in [Kind::Clusters, Kind::Endpoints] {
        let i = kind as usize;
        let Some(have) = &sent[i] else { continue };
        let union = union(have, &target[i]);
        if union != **have {
            let resources = if union == *target[i] {
                target[i].clone()
            } else {
                Arc::new(union)
            };
            holds[i] = Some(resources.clone());
            steps.push(Step { kind, resources });
        }
    }

    for kind in [Kind::Routes, Kind::Listeners] {
        let i = kind as usize;
        let Some(have) = &sent[i] else { continue };
        if **have != *target[i] {
            steps.push(Step {
                kind,
                resources: target[i].clone(),
            });
        }
    }

    for kind in [Kind::Endpoints, Kind::Clusters] {
        let i = kind as usize;
        let Some(have) = &holds[i] else { continue };
        if **have != *target[i] {
            steps.push(Step {
                kind,
                resources: target[i].clone(),
            });
        }
    }
    steps
}

/// `old` with every entry of `new` inserted (new values win).
fn union(old: &TypeSet, new: &TypeSet) -> TypeSet {
    let mut u = old.clone();
    for (name, value) in new {
        u.insert(name.clone(), value.clone());
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A type set whose entries are `name=value` pairs.
    fn set(entries: &[(&str, &str)]) -> Arc<TypeSet> {
        Arc::new(
            entries
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn names(step: &Step) -> (Kind, Vec<String>) {
        (step.kind, step.resources.keys().cloned().collect())
    }

    fn all(s: [Arc<TypeSet>; 4]) -> PerKind<Option<Arc<TypeSet>>> {
        s.map(Some)
    }

    /// Clusters and endpoints `fns`, one route config listing them, one listener.
    fn state(fns: &[&str]) -> [Arc<TypeSet>; 4] {
        let pairs: Vec<(&str, &str)> = fns.iter().map(|f| (*f, *f)).collect();
        let routes = fns.join(",");
        [
            set(&pairs),
            set(&pairs),
            set(&[("default", routes.as_str())]),
            set(&[("router", "default")]),
        ]
    }

    #[test]
    fn replacing_a_by_b_adds_before_it_removes() {
        let steps = plan(&all(state(&["a"])), &state(&["b"]));
        let got: Vec<_> = steps.iter().map(names).collect();
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (Kind::Clusters, v(&["a", "b"])),
                (Kind::Endpoints, v(&["a", "b"])),
                (Kind::Routes, v(&["default"])),
                (Kind::Endpoints, v(&["b"])),
                (Kind::Clusters, v(&["b"])),
            ]
        );
        assert_eq!(steps[2].resources.get("default"), Some(&b"b".to_vec()));
    }

    #[test]
    fn an_addition_is_one_pass_in_type_order() {
        let mut target = state(&["a", "b"]);
        target[Kind::Listeners as usize] = state(&["a"])[Kind::Listeners as usize].clone();
        let steps = plan(&all(state(&["a"])), &target);
        let kinds: Vec<Kind> = steps.iter().map(|s| s.kind).collect();
        // The listener did not change: not re-sent.
        assert_eq!(kinds, vec![Kind::Clusters, Kind::Endpoints, Kind::Routes]);
        // The union equals the target: the same allocation is sent, no removal pass.
        assert!(Arc::ptr_eq(&steps[0].resources, &target[0]));
    }

    #[test]
    fn a_removal_sends_routes_then_endpoints_then_clusters() {
        let steps = plan(&all(state(&["a", "b"])), &state(&["b"]));
        let kinds: Vec<Kind> = steps.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![Kind::Routes, Kind::Endpoints, Kind::Clusters]);
    }

    #[test]
    fn a_changed_value_is_sent_once_with_the_new_value() {
        let old = state(&["a"]);
        let mut new = old.clone();
        new[Kind::Endpoints as usize] = set(&[("a", "a-with-another-endpoint")]);
        let steps = plan(&all(old), &new);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].kind, Kind::Endpoints);
        assert_eq!(steps[0].resources, new[Kind::Endpoints as usize]);
    }

    #[test]
    fn nothing_changed_nothing_sent() {
        assert!(plan(&all(state(&["a"])), &state(&["a"])).is_empty());
        assert!(plan(&all(state(&[])), &state(&[])).is_empty());
    }

    #[test]
    fn unsubscribed_types_are_skipped() {
        let mut sent = all(state(&["a"]));
        sent[Kind::Clusters as usize] = None;
        sent[Kind::Listeners as usize] = None;
        let steps = plan(&sent, &state(&["b"]));
        let kinds: Vec<Kind> = steps.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![Kind::Endpoints, Kind::Routes, Kind::Endpoints]);
    }
}
