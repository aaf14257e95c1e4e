//! The conformance kit against a real Redis (`PORTCULLIS_TEST_REDIS_URL`).
//! Every store gets its own key prefix, so parallel cases never see each
//! other's data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_redis::RedisBackend;
use portcullis_test as kit;

const VAR: &str = "PORTCULLIS_TEST_REDIS_URL";

async fn backend() -> RedisBackend {
    let url = std::env::var(VAR).expect("the kit checked the variable");
    RedisBackend::connect(url, kit::unique_name("pc"))
        .await
        .expect("Redis is reachable")
}

kit::revocation_store_tests!(requires = "PORTCULLIS_TEST_REDIS_URL", |clock| async move {
    backend().await.revocations().with_clock(clock)
});

kit::api_key_store_tests!(requires = "PORTCULLIS_TEST_REDIS_URL", |clock| async move {
    backend().await.api_keys().with_clock(clock)
});

kit::attempt_store_tests!(
    requires = "PORTCULLIS_TEST_REDIS_URL",
    |_clock| async move { backend().await.attempts() }
);

kit::block_list_store_tests!(
    requires = "PORTCULLIS_TEST_REDIS_URL",
    |_clock| async move { backend().await.block_list() }
);

kit::csrf_token_store_tests!(requires = "PORTCULLIS_TEST_REDIS_URL", |clock| async move {
    backend().await.csrf_tokens().with_clock(clock)
});

kit::rate_limit_store_tests!(
    requires = "PORTCULLIS_TEST_REDIS_URL",
    |_clock| async move { backend().await.rate_limit() }
);

kit::audit_sink_tests!(
    requires = "PORTCULLIS_TEST_REDIS_URL",
    |_clock| async move {
        let sink = backend().await.audit();
        let reader = sink.clone();
        (sink, move || {
            let reader = reader.clone();
            async move { reader.recent_json(1000).await }
        })
    }
);
