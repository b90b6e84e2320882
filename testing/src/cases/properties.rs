//! Property tests (proptest): the store against a simple model.

use std::{collections::HashMap, sync::Arc};

use annals_core::{
    EventStore, ExpectedVersion, NewEvent, ReadAll, ReadFilter, ReadStream, RecordedEvent,
    StreamId, Version,
};
use futures::TryStreamExt;

use crate::generators::{append_ops, cases, check, unique_prefix, AppendOp};

fn same_event(stored: &RecordedEvent, sent: &NewEvent) -> bool {
    sent.same_content_as(stored)
}

async fn read_prefix(store: &dyn EventStore, prefix: &str) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAll::forward().filter(ReadFilter::new().stream_prefix(prefix)))
        .try_collect()
        .await
        .unwrap()
}

/// Applies `ops`, checking each result against the model; returns the model.
async fn apply_against_model(
    store: &dyn EventStore,
    prefix: &str,
    ops: Vec<AppendOp>,
) -> (HashMap<usize, Vec<NewEvent>>, Vec<NewEvent>) {
    let mut model: HashMap<usize, Vec<NewEvent>> = HashMap::new();
    let mut global: Vec<NewEvent> = Vec::new();
    for op in ops {
        let stream = StreamId::new(format!("{prefix}{}", op.stream)).unwrap();
        let current = Version::new(model.get(&op.stream).map_or(0, Vec::len) as u64);
        let expected = op.expect.resolve(current);
        let result = store.append(&stream, expected, op.events.clone()).await;
        if expected.matches(current) {
            let r = result.unwrap_or_else(|e| {
                panic!("append with {expected} at {current} must succeed: {e:?}")
            });
            let new_version = current.get() + op.events.len() as u64;
            assert_eq!(r.version, Version::new(new_version));
            assert_eq!(r.positions.len(), op.events.len());
            model
                .entry(op.stream)
                .or_default()
                .extend(op.events.iter().cloned());
            global.extend(op.events);
        } else {
            let err = result.expect_err("append must conflict");
            assert!(err.is_conflict(), "expected a conflict, got {err:?}");
        }
        assert_eq!(
            store.stream_version(&stream).await.unwrap(),
            Version::new(model.get(&op.stream).map_or(0, Vec::len) as u64)
        );
    }
    (model, global)
}

/// Random append sequences (all expectation kinds, empty batches, four streams)
/// read back exactly like a simple in-test model: per stream and globally.
pub async fn prop_random_appends_match_model(store: Arc<dyn EventStore>) {
    check(store, cases(24), append_ops(12), |store, ops| async move {
        let prefix = unique_prefix("model");
        let (model, global) = apply_against_model(&*store, &prefix, ops).await;
        for (index, sent) in &model {
            let stream = StreamId::new(format!("{prefix}{index}")).unwrap();
            let stored: Vec<RecordedEvent> = store
                .read_stream(ReadStream::forward(&stream))
                .try_collect()
                .await
                .unwrap();
            assert_eq!(stored.len(), sent.len());
            for (i, (stored, sent)) in stored.iter().zip(sent).enumerate() {
                assert!(
                    same_event(stored, sent),
                    "stream {stream} event {i} differs"
                );
                assert_eq!(stored.version, Version::new(i as u64 + 1));
            }
        }
        let all = read_prefix(&*store, &prefix).await;
        assert_eq!(all.len(), global.len());
        for (stored, sent) in all.iter().zip(&global) {
            assert!(
                same_event(stored, sent),
                "global order differs from append order"
            );
        }
        for pair in all.windows(2) {
            assert!(pair[0].position < pair[1].position);
        }
    })
    .await;
}

/// Reading the same data twice (stream and global log) gives identical results,
/// and a fold over the events (a projection) gives the same state.
pub async fn prop_replay_is_deterministic(store: Arc<dyn EventStore>) {
    check(store, cases(16), append_ops(10), |store, ops| async move {
        let prefix = unique_prefix("replay");
        apply_against_model(&*store, &prefix, ops).await;
        let first = read_prefix(&*store, &prefix).await;
        let second = read_prefix(&*store, &prefix).await;
        assert_eq!(first, second);
        let fold = |events: &[RecordedEvent]| {
            events
                .iter()
                .fold(HashMap::<String, (u64, usize)>::new(), |mut acc, e| {
                    let entry = acc.entry(e.stream_id.to_string()).or_default();
                    entry.0 = e.version.get();
                    entry.1 += e.payload.len();
                    acc
                })
        };
        assert_eq!(fold(&first), fold(&second));
        for index in 0..4 {
            let stream = StreamId::new(format!("{prefix}{index}")).unwrap();
            let a: Vec<RecordedEvent> = store
                .read_stream(ReadStream::forward(&stream))
                .try_collect()
                .await
                .unwrap();
            let b: Vec<RecordedEvent> = store
                .read_stream(ReadStream::forward(&stream))
                .try_collect()
                .await
                .unwrap();
            assert_eq!(a, b);
        }
    })
    .await;
}

/// Several writers racing `Exact(v)` on one stream: exactly one succeeds.
pub async fn prop_concurrent_exact_appends_never_both_succeed(store: Arc<dyn EventStore>) {
    check(
        store,
        cases(16),
        (2usize..6, 0u64..3),
        |store, (writers, initial)| async move {
            let stream = StreamId::new(format!("{}race", unique_prefix("race"))).unwrap();
            if initial > 0 {
                let events = (0..initial)
                    .map(|n| NewEvent::new("Init", n.to_string()))
                    .collect();
                store
                    .append(&stream, ExpectedVersion::NoStream, events)
                    .await
                    .unwrap();
            }
            let barrier = Arc::new(tokio::sync::Barrier::new(writers));
            let tasks: Vec<_> = (0..writers)
                .map(|w| {
                    let (store, stream, barrier) =
                        (Arc::clone(&store), stream.clone(), Arc::clone(&barrier));
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let event = NewEvent::new("Race", format!("writer {w}"));
                        store
                            .append(
                                &stream,
                                ExpectedVersion::Exact(Version::new(initial)),
                                vec![event],
                            )
                            .await
                    })
                })
                .collect();
            let mut wins = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Ok(r) => {
                        wins += 1;
                        assert_eq!(r.version, Version::new(initial + 1));
                    }
                    Err(e) => assert!(e.is_conflict(), "loser must get Conflict, got {e:?}"),
                }
            }
            assert_eq!(wins, 1, "exactly one racing writer must win");
            assert_eq!(
                store.stream_version(&stream).await.unwrap(),
                Version::new(initial + 1)
            );
        },
    )
    .await;
}
