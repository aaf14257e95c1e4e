//! The in-memory stores of `portcullis-core` pass the kit, as every other
//! backend must.

use portcullis_core::{
    MemoryApiKeyStore, MemoryAttemptStore, MemoryAuditSink, MemoryBlockList, MemoryCsrfTokenStore,
    MemoryRateLimitStore, MemoryRevocationStore, StoreError,
};
use serde_json::Value;

portcullis_test::revocation_store_tests!(|clock| async move {
    MemoryRevocationStore::with_clock(10_000, clock)
});
portcullis_test::api_key_store_tests!(|clock| async move {
    MemoryApiKeyStore::with_clock(10_000, clock)
});
portcullis_test::attempt_store_tests!(|_clock| async move { MemoryAttemptStore::new(10_000) });
portcullis_test::block_list_store_tests!(|_clock| async move { MemoryBlockList::new(10_000) });
portcullis_test::csrf_token_store_tests!(|clock| async move {
    MemoryCsrfTokenStore::with_clock(10_000, clock)
});
portcullis_test::rate_limit_store_tests!(|_clock| async move { MemoryRateLimitStore::new(10_000) });
portcullis_test::audit_sink_tests!(|_clock| async move {
    let sink = MemoryAuditSink::new(10_000);
    let reader = sink.clone();
    (sink, move || {
        let records = reader.records();
        async move { Ok::<Vec<Value>, StoreError>(records.iter().map(|r| r.to_json()).collect()) }
    })
});
