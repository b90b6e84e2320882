//! [`TablePrefix`]: a validated prefix for a SQL backend's table names, so several
//! stores can share one database.

use std::{borrow::Cow, sync::Arc};

use crate::{Error, Result};

/// A prefix for the names of a SQL backend's tables, indexes and functions: with
/// the prefix `billing_`, the events live in `billing_events`. Two stores with
/// different prefixes in one database are fully independent.
///
/// A prefix is at most [`TablePrefix::MAX_LEN`] characters of `a-z`, `0-9` and `_`,
/// starting with a letter or `_`, so it can be spliced into SQL unquoted; anything
/// else is [`Error::InvalidInput`]. The empty prefix (the default) keeps today's
/// names.
///
/// ```
/// use annals_core::backend::TablePrefix;
///
/// let prefix = TablePrefix::new("billing_")?;
/// let sql = prefix.apply("SELECT count(*) FROM events WHERE x = 'events'", &["events"]);
/// assert_eq!(sql, "SELECT count(*) FROM billing_events WHERE x = 'billing_events'");
/// assert!(TablePrefix::new("x; DROP TABLE events; --").is_err());
/// assert!(TablePrefix::new("a\"b").is_err());
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TablePrefix(Option<Arc<str>>);

impl TablePrefix {
    /// Longest prefix, in characters. PostgreSQL names are at most 63 bytes: every
    /// name a store looks up by name (tables, functions, the constraints it
    /// classifies errors by) stays within that with a 32-character prefix; a
    /// longer constraint name is truncated by PostgreSQL, the same way each time.
    pub const MAX_LEN: usize = 32;

    /// Validates `prefix`.
    pub fn new(prefix: &str) -> Result<Self> {
        if prefix.is_empty() {
            return Ok(TablePrefix(None));
        }
        if prefix.len() > Self::MAX_LEN {
            return Err(Error::invalid_input(format!(
                "table prefix is {} characters; the limit is {}",
                prefix.len(),
                Self::MAX_LEN
            )));
        }
        let first_ok = prefix.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        let rest_ok = prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !first_ok || !rest_ok {
            return Err(Error::invalid_input(format!(
                "table prefix `{}` must be a-z, 0-9 and `_`, starting with a letter or `_`",
                prefix.escape_debug()
            )));
        }
        Ok(TablePrefix(Some(Arc::from(prefix))))
    }

    /// The prefix (empty by default).
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }

    /// True for the empty prefix.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// `name` with the prefix.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.as_str())
    }

    /// `sql` with every whole-word occurrence of one of `names` prefixed — in
    /// string literals too, so catalog lookups (`WHERE name = 'events'`) follow.
    /// Borrows `sql` unchanged when the prefix is empty.
    pub fn apply<'a>(&self, sql: &'a str, names: &[&str]) -> Cow<'a, str> {
        let Some(prefix) = self.0.as_deref() else {
            return Cow::Borrowed(sql);
        };
        let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut out = String::with_capacity(sql.len() + 64);
        let mut word_start = None;
        for (i, c) in sql.char_indices().chain([(sql.len(), ' ')]) {
            match (word_start, is_word(c)) {
                (None, true) => word_start = Some(i),
                (Some(start), false) => {
                    let word = sql.get(start..i).unwrap_or_default();
                    if names.contains(&word) {
                        out.push_str(prefix);
                    }
                    out.push_str(word);
                    word_start = None;
                }
                _ => {}
            }
            if word_start.is_none() && i < sql.len() {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_prefixes() {
        for good in ["", "a", "_", "billing_", "t1_", &"a".repeat(32)] {
            assert!(TablePrefix::new(good).is_ok(), "{good}");
        }
        for bad in [
            "1a",
            "A",
            "a-b",
            "a b",
            "a'b",
            "a\"b",
            "a;b",
            "é",
            "a\0",
            &"a".repeat(33),
        ] {
            assert!(
                TablePrefix::new(bad).unwrap_err().is_invalid_input(),
                "{bad}"
            );
        }
    }

    #[test]
    fn prefixes_whole_words_only() {
        let p = TablePrefix::new("x_").unwrap();
        let names = ["events", "events_event_id"];
        assert_eq!(
            p.apply(
                "CREATE INDEX events_event_id ON events (event_id); -- events_other, max_events, events2",
                &names
            ),
            "CREATE INDEX x_events_event_id ON x_events (event_id); -- events_other, max_events, events2"
        );
        assert_eq!(p.apply("events", &names), "x_events");
        assert_eq!(p.apply("é events é", &names), "é x_events é");
        let empty = TablePrefix::default();
        assert!(matches!(
            empty.apply("events", &names),
            Cow::Borrowed("events")
        ));
    }
}
