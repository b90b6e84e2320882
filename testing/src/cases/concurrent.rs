//! Concurrent appends keep their own semantics (issue 18 §1): with group
//! commit, appends in flight together may share one transaction, and none of
//! them may feel it. These cases hold on every backend, grouped or not; the
//! backends' own tests (`sqlite/tests/group_commit.rs`,
//! `postgres/tests/group_commit.rs`) force the groups to form.

use std::sync::Arc;

use annals_core::{Error, EventId, EventStore, ExpectedVersion, Version};

use super::support::{all_events, batch, ev, sid, stream_events};

/// 16 concurrent appends, half of them expecting a version their stream is not
/// at: exactly those fail, with a conflict, and write nothing; the others
/// commit whole.
pub async fn concurrent_appends_half_conflicting_only_those_fail(store: Arc<dyn EventStore>) {
    for i in 0..16 {
        store
            .append(
                &sid(&format!("c-{i}")),
                ExpectedVersion::NoStream,
                batch(0, 1),
            )
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..16_u64)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let expected = if i % 2 == 0 { 1 } else { 7 };
                store
                    .append(
                        &sid(&format!("c-{i}")),
                        ExpectedVersion::Exact(Version::new(expected)),
                        batch(1, 2),
                    )
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        match (i % 2, task.await.unwrap()) {
            (0, Ok(result)) => {
                assert_eq!(result.version, Version::new(3), "c-{i}");
                assert_eq!(result.positions.len(), 2, "c-{i}");
            }
            (1, Err(Error::Conflict { actual, .. })) => assert_eq!(actual, Version::new(1)),
            (_, other) => panic!("c-{i}: unexpected outcome {other:?}"),
        }
    }
    for i in 0..16 {
        let versions: Vec<u64> = stream_events(&*store, &sid(&format!("c-{i}")))
            .await
            .iter()
            .map(|e| e.version.get())
            .collect();
        let want: Vec<u64> = if i % 2 == 0 { vec![1, 2, 3] } else { vec![1] };
        assert_eq!(versions, want, "c-{i}");
    }
    let log = all_events(&*store).await;
    assert_eq!(log.len(), 16 + 8 * 2);
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
}

/// Among concurrent appends, one reusing a stored event id for other content
/// fails with `InvalidInput` and writes nothing; its neighbours commit.
pub async fn a_concurrent_append_with_bad_input_fails_alone(store: Arc<dyn EventStore>) {
    let taken = EventId::new();
    store
        .append(
            &sid("owner"),
            ExpectedVersion::NoStream,
            vec![ev("Owned", 1).with_id(taken)],
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8_u64)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let events = if i == 3 {
                    vec![ev("Stolen", 2).with_id(taken)]
                } else {
                    batch(i, 1)
                };
                store
                    .append(&sid(&format!("b-{i}")), ExpectedVersion::NoStream, events)
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i == 3 {
            assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
            assert!(stream_events(&*store, &sid("b-3")).await.is_empty());
        } else {
            result.unwrap_or_else(|e| panic!("b-{i}: {e}"));
            assert_eq!(
                stream_events(&*store, &sid(&format!("b-{i}"))).await.len(),
                1
            );
        }
    }
    let owner = stream_events(&*store, &sid("owner")).await;
    assert_eq!(owner.len(), 1);
    assert_eq!(owner[0].event_type, "Owned");
}

/// An append cancelled while others are in flight is written whole or not at
/// all (a started group may still commit it), and the store stays usable.
pub async fn a_cancelled_concurrent_append_is_all_or_nothing(store: Arc<dyn EventStore>) {
    let tasks: Vec<_> = (0..16_u64)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append(
                        &sid(&format!("x-{i}")),
                        ExpectedVersion::NoStream,
                        batch(0, 3),
                    )
                    .await
            })
        })
        .collect();
    let victims = [5_usize, 11];
    for &v in &victims {
        tasks[v].abort();
    }
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(result) => {
                result.unwrap_or_else(|e| panic!("x-{i}: {e}"));
            }
            Err(e) => assert!(victims.contains(&i) && e.is_cancelled(), "x-{i}: {e}"),
        }
    }
    for &v in &victims {
        let stream = sid(&format!("x-{v}"));
        let before = stream_events(&*store, &stream).await.len();
        assert!(before == 0 || before == 3, "x-{v}: {before} events, a part");
        // Usable: an append to the same stream goes through.
        store
            .append(&stream, ExpectedVersion::Any, batch(3, 1))
            .await
            .unwrap();
        let events = stream_events(&*store, &stream).await;
        let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
        assert!(
            events.len() == 1 || events.len() == 4,
            "x-{v}: {versions:?}"
        );
    }
    let log = all_events(&*store).await;
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
}
