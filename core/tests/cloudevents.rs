//! The CloudEvents JSON format (structured mode) against the spec's own example
//! documents (cloudevents/spec, `cloudevents/formats/json-format.md` §3.2): each
//! is read, appended, read back and written out again with the same meaning.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use annals_core::{
    cloud::{parse_rfc3339, ExtensionValue},
    EventStore, ExpectedVersion, NewEvent, StreamId,
};
use annals_memory::MemoryEventStore;
use serde_json::{json, Value};

/// The spec's four examples. The binary one's `data_base64` is a placeholder in
/// the spec ("... base64 encoded string ..."), so real base64 stands in for it.
fn spec_examples() -> Vec<Value> {
    vec![
        json!({
            "specversion" : "1.0",
            "type" : "com.example.someevent",
            "source" : "/mycontext",
            "id" : "A234-1234-1234",
            "time" : "2018-04-05T17:31:00Z",
            "comexampleextension1" : "value",
            "comexampleothervalue" : 5,
            "datacontenttype" : "application/vnd.apache.thrift.binary",
            "data_base64" : "gAEAAQAAAAZ0aHJpZnQA/w=="
        }),
        json!({
            "specversion" : "1.0",
            "type" : "com.example.someevent",
            "source" : "/mycontext",
            "id" : "B234-1234-1234",
            "time" : "2018-04-05T17:31:00Z",
            "comexampleextension1" : "value",
            "comexampleothervalue" : 5,
            "unsetextension": null,
            "datacontenttype" : "application/xml",
            "data" : "<much wow=\"xml\"/>"
        }),
        json!({
            "specversion" : "1.0",
            "type" : "com.example.someevent",
            "source" : "/mycontext",
            "subject": null,
            "id" : "C234-1234-1234",
            "time" : "2018-04-05T17:31:00Z",
            "comexampleextension1" : "value",
            "comexampleothervalue" : 5,
            "datacontenttype" : "application/json",
            "data" : {
                "appinfoA" : "abc",
                "appinfoB" : 123,
                "appinfoC" : true
            }
        }),
        json!({
            "specversion" : "1.0",
            "type" : "com.example.someevent",
            "source" : "/mycontext",
            "subject": null,
            "id" : "D234-1234-1234",
            "time" : "2018-04-05T17:31:00Z",
            "comexampleextension1" : "value",
            "comexampleothervalue" : 5,
            "data" : "I'm just a string"
        }),
    ]
}

/// Asserts that `out` (annals' rendering of the event read from `input`, stored in
/// `stream`) means the same as `input`: the same members, with the defaults the
/// spec implies made explicit.
fn assert_same_meaning(input: &Value, out: &Value, stream: &str) {
    let (input, out) = (input.as_object().unwrap(), out.as_object().unwrap());
    for (name, value) in input {
        match (name.as_str(), value) {
            (_, Value::Null) if name != "subject" => {
                assert!(!out.contains_key(name), "unset `{name}` stays unset");
            }
            ("subject", Value::Null) => assert_eq!(out["subject"], stream),
            ("time", Value::String(t)) => assert_eq!(
                parse_rfc3339(out["time"].as_str().unwrap()).unwrap(),
                parse_rfc3339(t).unwrap()
            ),
            _ => assert_eq!(&out[name], value, "member `{name}`"),
        }
    }
    if !input.contains_key("datacontenttype") {
        assert_eq!(out["datacontenttype"], "application/json");
    }
    let extra: Vec<&String> = out
        .keys()
        .filter(|k| {
            !input.contains_key(*k) && !["datacontenttype", "subject"].contains(&k.as_str())
        })
        .collect();
    assert!(extra.is_empty(), "unexpected members {extra:?}");
}

#[tokio::test]
async fn spec_examples_round_trip_through_a_store() {
    let store = MemoryEventStore::new();
    let stream = StreamId::new("mycontext-1").unwrap();
    for example in spec_examples() {
        let event = NewEvent::from_cloudevent_json(&example.to_string()).unwrap();
        assert_eq!(event.event_type, "com.example.someevent");
        assert_eq!(event.source(), "/mycontext");
        assert_eq!(
            event.metadata.extensions.get("comexampleothervalue"),
            Some(&ExtensionValue::Integer(5))
        );
        assert!(!event.metadata.extensions.contains_key("unsetextension"));
        store
            .append(&stream, ExpectedVersion::Any, vec![event.clone()])
            .await
            .unwrap();
        let id = example["id"].as_str().unwrap();
        let stored = store.get_by_source_id("/mycontext", id).await.unwrap();
        assert!(event.same_content_as(&stored));
        let out = stored.to_cloudevent();
        assert_same_meaning(&example, &out, stream.as_str());
        // And annals' own document reads back to the same event.
        let again = NewEvent::from_cloudevent(&out).unwrap();
        assert_eq!(again.id, event.id);
        assert_eq!(again.payload, event.payload);
        assert_eq!(again.metadata.extensions, event.metadata.extensions);
        // Appending the same document again is an idempotent re-send.
        store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
    let all: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
        store.read_stream(annals_core::ReadStream::forward(&stream)),
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 4, "re-sent documents were not stored twice");
    assert_eq!(
        all[0].payload,
        b"\x80\x01\x00\x01\x00\x00\x00\x06thrift\x00\xff"
    );
    assert_eq!(all[1].payload, br#"<much wow="xml"/>"#);
    assert_eq!(all[3].payload, br#""I'm just a string""#);
}

#[test]
fn documents_breaking_the_spec_are_invalid_input() {
    let base = || json!({"specversion": "1.0", "type": "t", "source": "/s", "id": "1"});
    let with = |name: &str, value: Value| {
        let mut doc = base();
        doc[name] = value;
        doc
    };
    let without = |name: &str| {
        let mut doc = base();
        doc.as_object_mut().unwrap().remove(name);
        doc
    };
    let bad = [
        without("specversion"),
        without("type"),
        without("source"),
        without("id"),
        with("id", json!("")),
        with("specversion", json!("0.3")),
        with("source", json!("not a uri")),
        with("time", json!("yesterday")),
        with("time", json!("2018-04-05T17:31:00")),
        with("type", json!(5)),
        with("Upper", json!("x")),
        with("waytoolongextensionname", json!("x")),
        with("ext", json!({"nested": true})),
        with("ext", json!(1.5)),
        with("ext", json!(4_294_967_296_i64)),
        with("dataschema", json!("relative/path")),
        with("data_base64", json!("***")),
        {
            let mut doc = with("data", json!({"a": 1}));
            doc["data_base64"] = json!("AA==");
            doc
        },
        {
            let mut doc = with("data", json!({"a": 1}));
            doc["datacontenttype"] = json!("text/plain");
            doc
        },
        json!([1, 2]),
    ];
    for doc in bad {
        let err = NewEvent::from_cloudevent(&doc).expect_err(&doc.to_string());
        assert!(err.is_invalid_input(), "{doc}: {err:?}");
    }
    assert!(NewEvent::from_cloudevent_json("{")
        .unwrap_err()
        .is_invalid_input());
    // The base document itself is fine, and a missing data means an empty payload.
    let event = NewEvent::from_cloudevent(&base()).unwrap();
    assert!(event.payload.is_empty());
}

#[test]
fn correlation_and_causation_travel_as_extensions() {
    let doc = json!({
        "specversion": "1.0", "type": "t", "source": "/s", "id": "1",
        "correlationid": "req-1", "causationid": "cmd-1", "data": null
    });
    let event = NewEvent::from_cloudevent(&doc).unwrap();
    assert_eq!(event.metadata.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(event.metadata.causation_id.as_deref(), Some("cmd-1"));
    assert!(event.metadata.extensions.is_empty());
    assert_eq!(event.payload, b"null");
}
