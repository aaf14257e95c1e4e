//! The conformance kit against SQLite: every store on a fresh database file.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)]

mod common;

use portcullis_test as kit;

kit::revocation_store_tests!(|clock| async move {
    common::sqlite().await.revocations().with_clock(clock)
});
kit::api_key_store_tests!(
    |clock| async move { common::sqlite().await.api_keys().with_clock(clock) }
);
kit::attempt_store_tests!(|_clock| async move { common::sqlite().await.attempts() });
kit::block_list_store_tests!(|_clock| async move { common::sqlite().await.block_list() });
kit::csrf_token_store_tests!(|clock| async move {
    common::sqlite().await.csrf_tokens().with_clock(clock)
});
kit::audit_sink_tests!(|_clock| async move {
    let sink = common::sqlite().await.audit();
    let reader = sink.clone();
    (sink, move || {
        let reader = reader.clone();
        async move { reader.recent_json(1000).await }
    })
});
