//! Every store operation runs in a `tracing` span named `annals.<operation>` with the
//! stream, the counts and the outcome — and never a payload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use annals_core::{
    AppendRequest, EventStore, ExpectedVersion, NewEvent, ReadAll, ReadStream, StreamId,
};
use annals_memory::MemoryEventStore;
use annals_testing::spans::SpanRecorder;
use futures::TryStreamExt;

#[tokio::test(flavor = "current_thread")]
async fn every_operation_has_a_span_with_outcome_and_no_payload() {
    let recorder = SpanRecorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let store = MemoryEventStore::new();
    let (a, b) = (
        StreamId::new("acct-a").unwrap(),
        StreamId::new("acct-b").unwrap(),
    );
    let secret = NewEvent::new("Deposited", b"password=hunter2".to_vec());
    store
        .append(&a, ExpectedVersion::NoStream, vec![secret])
        .await
        .unwrap();
    let conflict = store
        .append(
            &a,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("X", vec![])],
        )
        .await;
    assert!(conflict.is_err());
    let request = AppendRequest::new()
        .append(&a, ExpectedVersion::Any, vec![NewEvent::new("X", vec![])])
        .append(&b, ExpectedVersion::Any, vec![NewEvent::new("Y", vec![])]);
    store.commit(request).await.unwrap();
    let _: Vec<_> = store
        .read_stream(ReadStream::forward(&a))
        .try_collect()
        .await
        .unwrap();
    let _: Vec<_> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    store.stream_version(&a).await.unwrap();
    store.load_snapshot(&a).await.unwrap();

    let spans = recorder.spans();
    let find = |name: &str| recorder.fields(name);
    let appends = find("annals.append");
    assert_eq!(appends.len(), 2, "{spans:?}");
    assert!(
        appends[0].contains("stream=acct-a")
            && appends[0].contains("events=1")
            && appends[0].contains("outcome=\"ok\""),
        "{}",
        appends[0]
    );
    assert!(
        appends[1].contains("outcome=\"conflict\""),
        "{}",
        appends[1]
    );
    let commits = find("annals.commit");
    assert!(
        commits[0].contains("streams=2") && commits[0].contains("events=2"),
        "{commits:?}"
    );
    let reads = find("annals.read_all");
    assert!(
        reads[0].contains("events=3") && reads[0].contains("outcome=\"ok\""),
        "{reads:?}"
    );
    assert_eq!(find("annals.read_stream").len(), 1);
    assert_eq!(find("annals.stream_version").len(), 1);
    assert_eq!(find("annals.load_snapshot").len(), 1);
    for (name, fields) in &spans {
        assert!(
            !fields.contains("hunter2"),
            "payload leaked into span {name}: {fields}"
        );
    }
}
