//! Structural comparison of typed values through [`serde_json::Value`]: which event,
//! which field, expected what, found what.

use serde::Serialize;
use serde_json::Value;

use crate::KitError;

/// Serializes `value` for comparison and messages.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Value, KitError> {
    serde_json::to_value(value).map_err(|e| KitError::Serialize(e.to_string()))
}

/// A short, readable rendering of an event: `ItemAdded {"sku":"tea","quantity":2}`,
/// or `OrderPaid` for a unit variant.
pub(crate) fn show_event(event: &Value) -> String {
    match event {
        Value::Object(map) if map.len() == 1 => match map.iter().next() {
            Some((name, payload)) => format!("{name} {payload}"),
            None => event.to_string(),
        },
        Value::String(name) => name.clone(),
        other => other.to_string(),
    }
}

/// The variant name of an externally tagged event.
pub(crate) fn event_name(event: &Value) -> String {
    match event {
        Value::Object(map) if map.len() == 1 => map.keys().next().cloned().unwrap_or_default(),
        Value::String(name) => name.clone(),
        other => other.to_string(),
    }
}

/// `[OrderPlaced, ItemAdded]`.
pub(crate) fn names(events: &[Value]) -> String {
    let names: Vec<String> = events.iter().map(event_name).collect();
    format!("[{}]", names.join(", "))
}

/// "1 event" / "2 events".
pub(crate) fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// One line per difference between two event lists; empty when they are equal.
pub(crate) fn diff_events(expected: &[Value], found: &[Value]) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..expected.len().max(found.len()) {
        match (expected.get(i), found.get(i)) {
            (Some(e), Some(f)) => diff_event(i, e, f, &mut lines),
            (Some(e), None) => lines.push(format!(
                "events[{i}]: expected {}, found no event",
                show_event(e)
            )),
            (None, Some(f)) => lines.push(format!(
                "events[{i}]: expected no event, found {}",
                show_event(f)
            )),
            (None, None) => {}
        }
    }
    lines
}

pub(crate) fn diff_event(i: usize, expected: &Value, found: &Value, lines: &mut Vec<String>) {
    if expected == found {
        return;
    }
    let (en, fname) = (event_name(expected), event_name(found));
    if en != fname {
        lines.push(format!(
            "events[{i}]: expected {}, found {}",
            show_event(expected),
            show_event(found)
        ));
        return;
    }
    let payload = |v: &Value| match v {
        Value::Object(map) if map.len() == 1 => map.values().next().cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    };
    diff_value(
        &format!("events[{i}] {en}"),
        "",
        &payload(expected),
        &payload(found),
        lines,
    );
}

/// Differences between two values; `prefix` names the value (`events[1] ItemAdded`,
/// `state`), `path` is the field path inside it.
pub(crate) fn diff_value(
    prefix: &str,
    path: &str,
    expected: &Value,
    found: &Value,
    lines: &mut Vec<String>,
) {
    if expected == found {
        return;
    }
    let at = |p: &str| {
        if p.is_empty() {
            format!("{prefix}:")
        } else {
            format!("{prefix}: field `{p}`:")
        }
    };
    let join = |p: &str, k: &str| {
        if p.is_empty() {
            k.to_owned()
        } else {
            format!("{p}.{k}")
        }
    };
    match (expected, found) {
        (Value::Object(e), Value::Object(f)) => {
            for (key, ev) in e {
                match f.get(key) {
                    Some(fv) => diff_value(prefix, &join(path, key), ev, fv, lines),
                    None => lines.push(format!(
                        "{} expected {ev}, found no such field",
                        at(&join(path, key))
                    )),
                }
            }
            for (key, fv) in f {
                if !e.contains_key(key) {
                    lines.push(format!(
                        "{} expected no such field, found {fv}",
                        at(&join(path, key))
                    ));
                }
            }
        }
        (Value::Array(e), Value::Array(f)) if e.len() == f.len() => {
            for (i, (ev, fv)) in e.iter().zip(f).enumerate() {
                diff_value(prefix, &format!("{path}[{i}]"), ev, fv, lines);
            }
        }
        _ => lines.push(format!("{} expected {expected}, found {found}", at(path))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_event_and_the_field() {
        let lines = diff_events(
            &[
                json!({"Placed": {"customer": "ann"}}),
                json!({"Added": {"sku": "tea", "qty": 2, "tags": ["a"]}}),
            ],
            &[
                json!({"Placed": {"customer": "ann"}}),
                json!({"Added": {"sku": "tea", "qty": 3, "note": "x", "tags": ["b"]}}),
                json!("Paid"),
            ],
        );
        assert_eq!(
            lines,
            [
                "events[1] Added: field `qty`: expected 2, found 3",
                "events[1] Added: field `tags[0]`: expected \"a\", found \"b\"",
                "events[1] Added: field `note`: expected no such field, found \"x\"",
                "events[2]: expected no event, found Paid",
            ]
        );
    }

    #[test]
    fn other_variants_and_missing_events_are_shown_whole() {
        let lines = diff_events(
            &[json!({"Placed": {"c": 1}}), json!({"Added": {"n": 1}})],
            &[json!("Paid")],
        );
        assert_eq!(
            lines,
            [
                "events[0]: expected Placed {\"c\":1}, found Paid",
                "events[1]: expected Added {\"n\":1}, found no event",
            ]
        );
        let mut lines = Vec::new();
        diff_value(
            "state",
            "",
            &json!({"a": {"b": 1}}),
            &json!({"a": {}}),
            &mut lines,
        );
        assert_eq!(
            lines,
            ["state: field `a.b`: expected 1, found no such field"]
        );
        lines.clear();
        diff_value("state", "", &json!(1), &json!([1]), &mut lines);
        assert_eq!(lines, ["state: expected 1, found [1]"]);
    }
}
