//! Ordering torture: 16 writers and 3 subscribers for 20 s; every subscriber sees
//! every event once, in order (see `annals_testing::torture`).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::{sync::Arc, time::Duration};

use annals_core::EventStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_writers_three_subscribers_twenty_seconds() {
    let store: Arc<dyn EventStore> = Arc::new(annals_memory::MemoryEventStore::new());
    let report = annals_testing::torture::subscriptions_under_concurrent_writers(
        store,
        16,
        3,
        Duration::from_secs(20),
    )
    .await;
    println!("{report:?}");
    assert!(report.appends >= 16, "every writer appended: {report:?}");
}
