//! The conformance kit against PostgreSQL: every store in a fresh schema.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod common;

use portcullis_test as kit;

kit::revocation_store_tests!(
    requires = "PORTCULLIS_TEST_POSTGRES_URL",
    |clock| async move { common::postgres().await.revocations().with_clock(clock) }
);
kit::api_key_store_tests!(
    requires = "PORTCULLIS_TEST_POSTGRES_URL",
    |clock| async move { common::postgres().await.api_keys().with_clock(clock) }
);
kit::attempt_store_tests!(
    requires = "PORTCULLIS_TEST_POSTGRES_URL",
    |_clock| async move { common::postgres().await.attempts() }
);
kit::block_list_store_tests!(
    requires = "PORTCULLIS_TEST_POSTGRES_URL",
    |_clock| async move { common::postgres().await.block_list() }
);
kit::csrf_token_store_tests!(
    requires = "PORTCULLIS_TEST_POSTGRES_URL",
    |clock| async move { common::postgres().await.csrf_tokens().with_clock(clock) }
);
kit::audit_sink_tests!(
    requires = "PORTCULLIS_TEST_POSTGRES_URL",
    |_clock| async move {
        let sink = common::postgres().await.audit();
        let reader = sink.clone();
        (sink, move || {
            let reader = reader.clone();
            async move { reader.recent_json(1000).await }
        })
    }
);
