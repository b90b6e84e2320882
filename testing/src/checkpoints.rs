//! The [`CheckpointStore`] contract, for every implementation (memory, SQLite,
//! PostgreSQL): run [`checkpoint_store_contract`] on a fresh store.

use annals_core::{consume::CheckpointStore, Position};

/// Loading, saving (never backward), independent names, reset, and name
/// validation, all through the trait.
pub async fn checkpoint_store_contract(checkpoints: &dyn CheckpointStore) {
    let p = Position::new;
    assert_eq!(
        checkpoints.load("orders").await.unwrap(),
        None,
        "nothing saved yet"
    );

    checkpoints.save("orders", p(5)).await.unwrap();
    assert_eq!(checkpoints.load("orders").await.unwrap(), Some(p(5)));
    checkpoints.save("orders", p(3)).await.unwrap();
    assert_eq!(
        checkpoints.load("orders").await.unwrap(),
        Some(p(5)),
        "a checkpoint never moves backward"
    );
    checkpoints.save("orders", p(9)).await.unwrap();
    assert_eq!(checkpoints.load("orders").await.unwrap(), Some(p(9)));

    checkpoints.save("emails", p(1)).await.unwrap();
    assert_eq!(checkpoints.load("emails").await.unwrap(), Some(p(1)));
    assert_eq!(
        checkpoints.load("orders").await.unwrap(),
        Some(p(9)),
        "names are independent"
    );

    checkpoints.reset("orders").await.unwrap();
    assert_eq!(checkpoints.load("orders").await.unwrap(), None);
    assert_eq!(checkpoints.load("emails").await.unwrap(), Some(p(1)));
    checkpoints.reset("never-saved").await.unwrap();
    checkpoints.save("orders", p(2)).await.unwrap();
    assert_eq!(
        checkpoints.load("orders").await.unwrap(),
        Some(p(2)),
        "after a reset the checkpoint starts over"
    );

    let longest = "n".repeat(255);
    checkpoints.save(&longest, p(7)).await.unwrap();
    assert_eq!(checkpoints.load(&longest).await.unwrap(), Some(p(7)));
    let unicode = "projection/überblick-📦";
    checkpoints.save(unicode, p(4)).await.unwrap();
    assert_eq!(checkpoints.load(unicode).await.unwrap(), Some(p(4)));

    for bad in [String::new(), "n".repeat(256), "a\0b".to_owned()] {
        let shown = bad.escape_debug().to_string();
        assert!(
            checkpoints.load(&bad).await.unwrap_err().is_invalid_input(),
            "load `{shown}`"
        );
        assert!(
            checkpoints
                .save(&bad, p(1))
                .await
                .unwrap_err()
                .is_invalid_input(),
            "save `{shown}`"
        );
        assert!(
            checkpoints
                .reset(&bad)
                .await
                .unwrap_err()
                .is_invalid_input(),
            "reset `{shown}`"
        );
    }
    assert_eq!(
        checkpoints.load("emails").await.unwrap(),
        Some(p(1)),
        "rejected calls change nothing"
    );
}
