//! `MemoryCheckpoints` (annals-core) under the shared checkpoint contract.
#![allow(missing_docs)]

#[tokio::test]
async fn memory_checkpoints_keep_the_contract() {
    annals_testing::checkpoints::checkpoint_store_contract(
        &annals_core::consume::MemoryCheckpoints::new(),
    )
    .await;
}

#[tokio::test]
async fn memory_leases_keep_the_contract() {
    let leases = annals_core::consume::MemoryLeases::new();
    annals_testing::leases::lease_provider_contract(&leases, &leases.clone()).await;
}
