//! App features (`wasmdyno features:enable NAME`, as Heroku Labs has them): one definition of each name, read by
//! the store (which validates them), the dyno manager and the router.

/// A new `wasi:http` instance for every request (per-request isolation) instead of warm instances.
pub(crate) const HTTP_FRESH_INSTANCES: &str = "http-fresh-instances";

/// A new router connection to a listening web dyno for every request, instead of kept-alive ones.
pub(crate) const NO_KEEPALIVE_TO_DYNO: &str = "http-disable-keepalive-to-dyno";
