//! Redis: key names, a lazily (re)connecting link, and the window writer.
//!
//! Keys (`<instance>` is `SLUICE_INSTANCE`, default `sluice`):
//!
//! | key | type | written |
//! |---|---|---|
//! | `<instance>:load:<fn>` | hash, TTL (30 s) | replaced at every window end |
//! | `<instance>:load:<fn>:history` | list of JSON windows, newest first, capped (120), TTL | LPUSH + LTRIM at every window end |
//! | `<instance>:stats-listener` | hash of the listener's own counters | at every window end |
//! | `<instance>:scale-signal` | pub/sub channel | on queueing, at once |

pub mod link;
pub mod writer;

pub use link::RedisLink;

/// Redis key names of one Sluice instance.
#[derive(Debug, Clone)]
pub struct Keys {
    instance: String,
}

impl Keys {
    pub fn new(instance: &str) -> Keys {
        Keys {
            instance: instance.to_string(),
        }
    }

    /// Hash with the last window of `function`.
    pub fn load(&self, function: &str) -> String {
        sluice_common::load::load_key(&self.instance, function)
    }

    /// List of the last windows of `function` (JSON, newest first).
    pub fn history(&self, function: &str) -> String {
        sluice_common::load::history_key(&self.instance, function)
    }

    /// Hash with the listener's own counters.
    pub fn stats(&self) -> String {
        format!("{}:stats-listener", self.instance)
    }

    /// Pub/sub channel of scale signals.
    pub fn signal_channel(&self) -> String {
        sluice_common::load::signal_channel(&self.instance)
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn key_names() {
        let k = Keys::new("sluice");
        assert_eq!(k.load("hello"), "sluice:load:hello");
        assert_eq!(k.history("hello"), "sluice:load:hello:history");
        assert_eq!(k.stats(), "sluice:stats-listener");
        assert_eq!(k.signal_channel(), "sluice:scale-signal");
    }
}
