//! The macros: one per store trait, each expanding to a module of named
//! tests, one per case of the trait's module.

/// Expands to one `#[test]` per case in a module named `$module`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_suite {
    ($module:ident, $cases:ident, $requires:expr, $factory:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::run(
                        concat!(stringify!($module), "::", stringify!($case)),
                        $requires,
                        $crate::$cases::$case($factory),
                    );
                }
            )*
        }
    };
}

/// The [`RevocationStore`](portcullis_core::RevocationStore) suite: one
/// test per case of [`revocation`](crate::revocation).
///
/// `revocation_store_tests!(factory)` or
/// `revocation_store_tests!(requires = "ENV_VAR", factory)`, where `factory`
/// is `|clock: SharedClock| async move { store }`.
#[macro_export]
macro_rules! revocation_store_tests {
    (requires = $var:literal, $factory:expr $(,)?) => {
        $crate::revocation_store_tests!(@cases ::core::option::Option::Some($var), $factory);
    };
    (@cases $requires:expr, $factory:expr) => {
        $crate::__conformance_suite!(revocation_store_conformance, revocation, $requires, $factory, [
            revoke_token_is_test_and_set,
            unknown_tokens_are_not_revoked,
            families_cover_their_members,
            subject_watermarks_only_move_forward,
            namespaces_do_not_collide,
            revocations_last_until_they_expire,
            long_and_unicode_ids_round_trip,
        ]);
    };
    ($factory:expr $(,)?) => {
        $crate::revocation_store_tests!(@cases ::core::option::Option::None, $factory);
    };
}

/// The [`ApiKeyStore`](portcullis_core::ApiKeyStore) suite: one test per
/// case of [`api_key`](crate::api_key). Same forms as
/// [`revocation_store_tests!`].
#[macro_export]
macro_rules! api_key_store_tests {
    (requires = $var:literal, $factory:expr $(,)?) => {
        $crate::api_key_store_tests!(@cases ::core::option::Option::Some($var), $factory);
    };
    (@cases $requires:expr, $factory:expr) => {
        $crate::__conformance_suite!(api_key_store_conformance, api_key, $requires, $factory, [
            create_then_lookup_round_trips,
            unknown_ids_are_none,
            create_refuses_an_existing_id_with_one_winner,
            revoke_and_expire_only_move_earlier,
            touch_keeps_the_latest_use,
            list_orders_filters_and_limits,
            list_judges_activity_by_the_store_clock,
            debug_never_shows_digests,
        ]);
    };
    ($factory:expr $(,)?) => {
        $crate::api_key_store_tests!(@cases ::core::option::Option::None, $factory);
    };
}

/// The [`AttemptStore`](portcullis_core::AttemptStore) suite: one test per
/// case of [`attempt`](crate::attempt). Same forms as
/// [`revocation_store_tests!`].
#[macro_export]
macro_rules! attempt_store_tests {
    (requires = $var:literal, $factory:expr $(,)?) => {
        $crate::attempt_store_tests!(@cases ::core::option::Option::Some($var), $factory);
    };
    (@cases $requires:expr, $factory:expr) => {
        $crate::__conformance_suite!(attempt_store_conformance, attempt, $requires, $factory, [
            parallel_failures_count_exactly,
            concurrent_begins_admit_exactly_the_limit,
            the_limit_locks_and_the_lock_ends,
            the_window_slides,
            reservations_expire,
            success_resets_and_release_frees,
            unknown_keys_are_none_and_reads_do_not_insert,
            operator_locks_unlocks_and_listing_order,
            hottest_orders_by_failures,
            key_kinds_and_odd_accounts_stay_apart,
            pairs_of_finds_the_account_and_address_counters,
            failures_from_clocks_behind_still_count,
            matches_the_reference_state_machine,
        ]);
    };
    ($factory:expr $(,)?) => {
        $crate::attempt_store_tests!(@cases ::core::option::Option::None, $factory);
    };
}

/// The [`BlockListStore`](portcullis_core::BlockListStore) suite: one test
/// per case of [`block_list`](crate::block_list). Same forms as
/// [`revocation_store_tests!`].
#[macro_export]
macro_rules! block_list_store_tests {
    (requires = $var:literal, $factory:expr $(,)?) => {
        $crate::block_list_store_tests!(@cases ::core::option::Option::Some($var), $factory);
    };
    (@cases $requires:expr, $factory:expr) => {
        $crate::__conformance_suite!(block_list_store_conformance, block_list, $requires, $factory, [
            the_most_specific_entry_wins,
            ended_blocks_do_not_match,
            block_replaces_the_same_network,
            unblock_returns_the_entry_once,
            ipv6_networks_and_hosts,
        ]);
    };
    ($factory:expr $(,)?) => {
        $crate::block_list_store_tests!(@cases ::core::option::Option::None, $factory);
    };
}

/// The [`CsrfTokenStore`](portcullis_core::CsrfTokenStore) suite: one test
/// per case of [`csrf`](crate::csrf). Same forms as
/// [`revocation_store_tests!`].
#[macro_export]
macro_rules! csrf_token_store_tests {
    (requires = $var:literal, $factory:expr $(,)?) => {
        $crate::csrf_token_store_tests!(@cases ::core::option::Option::Some($var), $factory);
    };
    (@cases $requires:expr, $factory:expr) => {
        $crate::__conformance_suite!(csrf_token_store_conformance, csrf, $requires, $factory, [
            tokens_validate_for_their_session_only,
            a_digest_of_another_session_is_a_conflict,
            reissue_extends_the_expiry,
            consume_has_exactly_one_winner,
            expired_tokens_never_validate_and_are_purged,
            revoke_session_counts_what_it_drops,
            debug_never_shows_sessions_or_digests,
        ]);
    };
    ($factory:expr $(,)?) => {
        $crate::csrf_token_store_tests!(@cases ::core::option::Option::None, $factory);
    };
}

/// The [`AuditSink`](portcullis_core::AuditSink) suite: one test per case
/// of [`audit`](crate::audit). The factory returns `(sink, read_back)`,
/// where `read_back()` returns a future of every stored record's JSON
/// ([`AuditRecord::to_json`](portcullis_core::AuditRecord::to_json)),
/// oldest first.
#[macro_export]
macro_rules! audit_sink_tests {
    (requires = $var:literal, $factory:expr $(,)?) => {
        $crate::audit_sink_tests!(@cases ::core::option::Option::Some($var), $factory);
    };
    (@cases $requires:expr, $factory:expr) => {
        $crate::__conformance_suite!(audit_sink_conformance, audit, $requires, $factory, [
            batches_are_stored_in_order,
            concurrent_batches_all_land,
        ]);
    };
    ($factory:expr $(,)?) => {
        $crate::audit_sink_tests!(@cases ::core::option::Option::None, $factory);
    };
}

/// The [`RateLimitStore`](portcullis_core::RateLimitStore) suite: one test
/// per case of [`rate_limit`](crate::rate_limit). Same forms as
/// [`revocation_store_tests!`].
#[macro_export]
macro_rules! rate_limit_store_tests {
    (requires = $var:literal, $factory:expr $(,)?) => {
        $crate::rate_limit_store_tests!(@cases ::core::option::Option::Some($var), $factory);
    };
    (@cases $requires:expr, $factory:expr) => {
        $crate::__conformance_suite!(rate_limit_store_conformance, rate_limit, $requires, $factory, [
            a_burst_then_one_per_period,
            concurrent_checks_allow_exactly_the_burst,
            matches_the_reference_gcra,
            keys_have_separate_budgets,
        ]);
    };
    ($factory:expr $(,)?) => {
        $crate::rate_limit_store_tests!(@cases ::core::option::Option::None, $factory);
    };
}
