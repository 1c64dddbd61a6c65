//! The platform's clock in unix seconds, as the ledger dates releases and `ps` ages dynos.

/// The current time in unix seconds.
pub fn unix_now() -> i64 {
    unix_seconds(std::time::SystemTime::now())
}

/// A time already read, in unix seconds.
pub fn unix_seconds(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
