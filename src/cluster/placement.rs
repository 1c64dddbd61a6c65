//! Where each formation dyno runs: a pure function of the live hosts, the dynos the ledger wants and where they run
//! now, so it can be tested without a database.
//!
//! A dyno stays where it is while its host lives and has room; a dyno without a host (new, or its host died) goes
//! to the live host with the fewest dynos of its app (spreading each app), then the least used share of its
//! capacity, then by id. Dynos are not moved to rebalance: a host that joins takes new and orphaned dynos.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::postgres::cluster::{Host, Placement, WantedDyno};

/// The placements to have: every wanted dyno that fits somewhere, each on one live host.
pub(crate) fn plan(hosts: &[Host], wanted: &[WantedDyno], current: &[Placement]) -> Vec<Placement> {
    let mut used: BTreeMap<&str, u64> = hosts.iter().map(|h| (h.id.as_str(), 0)).collect();
    let capacity: BTreeMap<&str, u64> = hosts
        .iter()
        .map(|h| (h.id.as_str(), u64::from(h.capacity)))
        .collect();
    // (app, host) → dynos of the app on the host.
    let mut per_app: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let wanted_units: BTreeMap<(&str, &str), u32> = wanted
        .iter()
        .map(|w| ((w.app.as_str(), w.dyno.as_str()), w.units))
        .collect();
    let mut out = Vec::with_capacity(wanted.len());
    let mut placed: BTreeSet<(&str, &str)> = BTreeSet::new();

    for p in current {
        let key = (p.app.as_str(), p.dyno.as_str());
        let Some(&units) = wanted_units.get(&key) else {
            continue;
        };
        let (Some(used_now), Some(&cap)) =
            (used.get_mut(p.host.as_str()), capacity.get(p.host.as_str()))
        else {
            continue;
        };
        if units != p.units || *used_now + u64::from(units) > cap {
            continue;
        }
        *used_now += u64::from(units);
        *per_app
            .entry((p.app.as_str(), p.host.as_str()))
            .or_default() += 1;
        placed.insert(key);
        out.push(p.clone());
    }

    for w in wanted {
        let key = (w.app.as_str(), w.dyno.as_str());
        if placed.contains(&key) {
            continue;
        }
        let best = hosts
            .iter()
            .filter(|h| used[h.id.as_str()] + u64::from(w.units) <= u64::from(h.capacity))
            .min_by(|a, b| {
                let load = |h: &Host| {
                    (
                        per_app
                            .get(&(w.app.as_str(), h.id.as_str()))
                            .copied()
                            .unwrap_or(0),
                        // Used share of capacity, in thousandths.
                        used[h.id.as_str()] * 1000 / u64::from(h.capacity.max(1)),
                    )
                };
                load(a).cmp(&load(b)).then_with(|| a.id.cmp(&b.id))
            });
        let Some(host) = best else {
            continue;
        };
        *used.get_mut(host.id.as_str()).expect("a live host") += u64::from(w.units);
        *per_app
            .entry((w.app.as_str(), host.id.as_str()))
            .or_default() += 1;
        placed.insert(key);
        out.push(Placement {
            app: w.app.clone(),
            dyno: w.dyno.clone(),
            host: host.id.clone(),
            units: w.units,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, capacity: u32) -> Host {
        Host {
            id: id.into(),
            api: String::new(),
            router: String::new(),
            capacity,
        }
    }

    fn want(app: &str, kind: &str, n: u32, units: u32) -> Vec<WantedDyno> {
        (1..=n)
            .map(|i| WantedDyno {
                app: app.into(),
                dyno: format!("{kind}.{i}"),
                units,
            })
            .collect()
    }

    fn count_on(placements: &[Placement], host: &str) -> usize {
        placements.iter().filter(|p| p.host == host).count()
    }

    #[test]
    fn an_apps_dynos_spread_over_hosts() {
        let hosts = [host("a", 100), host("b", 100), host("c", 100)];
        let mut wanted = want("shop", "web", 6, 1);
        wanted.extend(want("shop", "worker", 3, 1));
        let placed = plan(&hosts, &wanted, &[]);
        assert_eq!(placed.len(), 9);
        for h in ["a", "b", "c"] {
            assert_eq!(count_on(&placed, h), 3, "{placed:?}");
        }
    }

    #[test]
    fn dynos_stay_put_and_orphans_move_to_live_hosts() {
        let hosts = [host("a", 100), host("b", 100), host("c", 100)];
        let wanted = want("shop", "web", 6, 1);
        let first = plan(&hosts, &wanted, &[]);
        // Nothing moves while every host lives.
        assert_eq!(plan(&hosts, &wanted, &first), first);
        // Host b dies: its dynos go to a and c, the others stay.
        let live = [host("a", 100), host("c", 100)];
        let second = plan(&live, &wanted, &first);
        assert_eq!(second.len(), 6);
        assert_eq!(count_on(&second, "b"), 0);
        for p in first.iter().filter(|p| p.host != "b") {
            assert!(second.contains(p), "{p:?} moved");
        }
    }

    #[test]
    fn capacity_is_respected_and_what_does_not_fit_waits() {
        let hosts = [host("a", 2), host("b", 1)];
        let wanted = want("big", "web", 2, 2);
        let placed = plan(&hosts, &wanted, &[]);
        assert_eq!(placed.len(), 1, "only one 2-unit dyno fits: {placed:?}");
        assert_eq!(placed[0].host, "a");
        assert!(
            plan(&[], &wanted, &placed).is_empty(),
            "no live host, no placement"
        );
    }

    #[test]
    fn scaled_down_and_resized_dynos_are_dropped_or_replaced() {
        let hosts = [host("a", 100)];
        let placed = plan(&hosts, &want("shop", "web", 3, 1), &[]);
        let fewer = plan(&hosts, &want("shop", "web", 1, 1), &placed);
        assert_eq!(fewer.len(), 1);
        let bigger = plan(&hosts, &want("shop", "web", 1, 2), &fewer);
        assert_eq!(bigger[0].units, 2);
    }
}
