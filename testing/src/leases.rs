//! The [`LeaseProvider`] contract, for every implementation (memory, SQLite,
//! PostgreSQL): run [`lease_provider_contract`] on two providers of the same
//! database (two stores, as two processes would have).

use std::time::Duration;

use annals_core::consume::LeaseProvider;

/// Generous deadline for a released lease to be taken (the providers retry at
/// sub-second intervals; a busy CI machine is slow, never this slow).
const DEADLINE: Duration = Duration::from_secs(60);

/// One holder per name at a time, across `a` and `b`; a waiter takes over
/// when the holder drops its lease; names are independent; bad names are
/// rejected.
pub async fn lease_provider_contract(a: &dyn LeaseProvider, b: &dyn LeaseProvider) {
    let first = a.acquire("orders").await.unwrap();
    assert!(first.is_held());
    assert_eq!(first.name(), "orders");

    // While `first` is held, nobody else gets it: a waiter is still waiting
    // after several of the providers' retry intervals.
    for provider in [a, b] {
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), provider.acquire("orders"))
                .await
                .is_err(),
            "a held lease is not granted twice"
        );
    }
    // Another name is free.
    let other = b.acquire("emails").await.unwrap();

    // A waiter takes over once the holder lets go.
    let waiter = async {
        tokio::time::timeout(DEADLINE, b.acquire("orders"))
            .await
            .expect("the waiter gets the lease after its release")
            .unwrap()
    };
    let release = async {
        tokio::task::yield_now().await;
        drop(first);
    };
    let (second, ()) = futures::join!(waiter, release);
    assert!(second.is_held());
    drop(other);
    drop(second);
    // Released leases can be taken again, by either side.
    drop(a.acquire("orders").await.unwrap());
    drop(a.acquire("emails").await.unwrap());

    for bad in [String::new(), "n".repeat(256), "a\0b".to_owned()] {
        let error = a.acquire(&bad).await.unwrap_err();
        assert!(error.is_invalid_input(), "{error}");
    }
}
