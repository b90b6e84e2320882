//! The shared conformance suite against the in-memory backend.

annals_testing::conformance_suite!(async {
    annals_testing::Fixture::new(annals_memory::MemoryEventStore::new())
});
