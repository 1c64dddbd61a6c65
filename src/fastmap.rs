//! The hash maps on the request path: each request looks its app up in several (the routing table, the router's
//! loads, the dyno manager's, metrics, log streams). foldhash, seeded per map, takes a fraction of the
//! instructions of the standard library's SipHash on these short keys; the keys are app names, domains and ids
//! the platform made or checked, and the seed still differs per map and process.

/// A [`HashMap`](std::collections::HashMap) with foldhash; make one with `FastMap::default()`.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
