//! The **annals conformance suite**: one set of behaviour tests every backend runs.
//!
//! A case is an `async fn(Arc<dyn EventStore>)` in [`cases`] that panics when the
//! store breaks the contract. [`conformance_suite!`] expands to one `#[tokio::test]`
//! per case, each on a fresh store built by the expression you pass, so a backend's
//! `tests/conformance.rs` is a few lines:
//!
//! ```ignore
//! use annals_testing::Fixture;
//!
//! annals_testing::conformance_suite!(async { Fixture::new(annals_memory::MemoryEventStore::new()) });
//! ```
//!
//! The expression is evaluated once per case and must produce a
//! `Future<Output = Fixture>`. A [`Fixture`] may carry a teardown future (drop a
//! PostgreSQL schema, delete a file) that runs after the case, also when it fails.
//!
//! A new behaviour is added here, never to one backend's tests.
// Assertions are the point of this crate: a panic is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
#![deny(missing_docs)]

pub mod cases;
pub mod checkpoints;
pub mod child;
mod fixture;
pub mod generators;
pub mod leases;
#[cfg(feature = "postgres")]
pub mod postgres;
mod send;
pub mod spans;
pub mod torture;

pub use fixture::{run_case, Fixture};

/// Expands to one `#[tokio::test]` per conformance case and property.
///
/// The argument is an expression producing a `Future<Output = Fixture>`; it is
/// evaluated once per test, so every case gets a fresh, empty store.
#[macro_export]
macro_rules! conformance_suite {
    ($setup:expr) => {
        $crate::__case_list!(tests $setup);
    };
}

/// The suite's one list of cases, handed to [`__conformance_cases!`] with a mode:
/// `tests $setup` expands to the tests of [`conformance_suite!`], `send` to a
/// compile-time proof that every case's future is `Send` (in `src/send.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __case_list {
    ($($mode:tt)*) => {
        $crate::__conformance_cases!($($mode)*;
            // contract: versions and expected versions
            first_event_has_version_one,
            versions_are_contiguous,
            missing_stream_is_at_version_zero,
            expected_any_appends_to_new_and_existing,
            expected_no_stream_succeeds_on_new_stream,
            expected_no_stream_fails_on_existing_stream,
            expected_stream_exists_succeeds_on_existing_stream,
            expected_stream_exists_fails_on_missing_stream,
            expected_exact_succeeds_at_current_version,
            expected_exact_fails_when_behind_or_ahead,
            expected_exact_zero_means_no_stream,
            conflict_reports_stream_expected_and_actual,
            // concurrent appends (group commit) keep their own semantics
            concurrent_appends_half_conflicting_only_those_fail,
            a_concurrent_append_with_bad_input_fails_alone,
            a_cancelled_concurrent_append_is_all_or_nothing,
            failed_append_writes_nothing,
            empty_batch_is_noop_that_checks_expected,
            // input validation
            invalid_stream_ids_are_rejected,
            stream_id_at_limit_is_accepted,
            invalid_event_fields_are_rejected_and_nothing_written,
            oversized_payload_is_rejected_and_nothing_written,
            binary_and_unicode_payloads_round_trip,
            // reads
            read_stream_from_version,
            read_stream_with_limit,
            read_stream_of_missing_stream_is_empty,
            read_stream_is_isolated_per_stream,
            read_all_returns_everything_in_position_order,
            read_all_from_position,
            read_all_with_limit,
            read_all_filters_by_event_type,
            read_all_filters_by_stream_prefix,
            read_all_combines_filters_and_limit,
            read_all_prefix_matches_reference_semantics,
            reads_spanning_many_pages_return_each_event_once,
            positions_strictly_increase_across_streams,
            append_result_matches_stored_events,
            recorded_event_round_trips_all_fields,
            get_event_by_id,
            get_event_unknown_id_is_not_found,
            // idempotency
            idempotent_reappend_returns_original_result,
            reused_event_id_with_different_content_is_rejected,
            reused_event_id_in_another_stream_is_rejected,
            duplicate_id_within_batch_is_rejected,
            // snapshots
            snapshot_save_and_load,
            snapshot_load_missing_is_none,
            snapshot_newer_replaces_older,
            snapshot_older_than_stored_is_ignored,
            snapshot_delete_removes_only_snapshot,
            invalid_snapshot_is_rejected,
            // scale and concurrency
            cancelled_append_is_all_or_nothing,
            large_batch_is_atomic,
            concurrent_exact_appends_have_one_winner_per_version,
            concurrent_appends_to_different_streams_all_succeed,
            read_100k_events_through_stream_api,
            dropped_reads_leave_the_store_usable,
            // appends across several streams
            multi_conflict_in_third_part_writes_nothing,
            multi_conflict_names_every_mismatched_stream,
            multi_stale_condition_writes_nothing,
            multi_current_condition_lets_write_through,
            multi_events_are_contiguous_in_read_all,
            multi_readers_never_see_part_of_a_request,
            multi_idempotent_resend_returns_original,
            multi_malformed_requests_are_invalid,
            multi_racing_overlapping_requests_have_one_winner,
            prop_random_multi_stream_requests_match_model,
            // edge values, laziness, backward reads, cursors, globs, limits
            unpolled_futures_do_nothing,
            values_above_i64_max_follow_one_rule,
            read_all_after_resumes_without_gaps_or_repeats,
            backward_reads_return_newest_first,
            read_all_glob_matches_reference_semantics,
            capabilities_are_reported_and_enforced,
            finished_reads_stay_finished,
            // consuming the log: subscriptions, checkpoints, projections, replays
            subscription_catches_up_then_follows_live,
            own_appends_wake_caught_up_subscriptions,
            subscription_resumes_after_checkpoint,
            subscription_filter_selects_like_read_all,
            subscription_to_one_stream,
            subscription_slow_consumer_and_cancellation,
            subscriptions_with_concurrent_writers_see_everything_once,
            projection_checkpoints_and_error_policies,
            projection_rebuilds_while_writers_append,
            replay_reports_progress_and_failures,
            // CloudEvents attributes, lookups by (source, id), queries
            cloud_attributes_round_trip,
            cloud_invalid_attributes_are_rejected_and_nothing_written,
            cloud_idempotency_covers_attributes,
            get_by_source_id_finds_events,
            query_matches_reference_semantics,
            query_by_subject_agrees_with_read_stream,
            prop_random_queries_match_model,
            // properties (proptest)
            prop_random_appends_match_model,
            prop_replay_is_deterministic,
            prop_concurrent_exact_appends_never_both_succeed,
            // aggregates, repository and snapshots (annals-core's Repository)
            aggregate_load_uses_snapshot_and_tail,
            aggregate_concurrent_commands_retry_to_success,
            aggregate_stale_snapshot_schema_is_ignored,
            aggregate_old_event_versions_are_upcast,
            prop_snapshot_plus_tail_equals_full_replay,
            prop_deleting_snapshots_changes_no_loaded_state,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (tests $setup:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::run_case($setup, $crate::cases::$case).await;
            }
        )*
    };
    (send; $($case:ident),* $(,)?) => {
        /// Every case's future is `Send` (compile-time check; never called).
        #[allow(dead_code)]
        fn cases_are_send(store: ::std::sync::Arc<dyn ::annals_core::EventStore>) {
            fn is_send<T: Send>(_: T) {}
            $( is_send($crate::cases::$case(::std::sync::Arc::clone(&store))); )*
        }
    };
}
