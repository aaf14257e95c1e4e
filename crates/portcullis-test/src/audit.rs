//! Cases for [`AuditSink`]: every record written is stored once, in order.

use std::future::Future;
use std::time::Duration;

use portcullis_core::{AuditRecord, AuditSink, EventKind, StoreError};
use serde_json::Value;

use crate::{StoreFactory, build, in_parallel, secs};

fn records(clock: &portcullis_core::FakeClock, prefix: &str, n: usize) -> Vec<AuditRecord> {
    (0..n)
        .map(|i| {
            let at = secs(clock, 0) + Duration::from_millis(u64::try_from(i).unwrap_or(0));
            let event = if i % 2 == 0 {
                EventKind::AuthFailure
            } else {
                EventKind::AuthSuccess
            };
            AuditRecord::new(event, at, format!("{prefix}-{i}"))
        })
        .collect()
}

fn trace_ids(stored: &[Value]) -> Vec<String> {
    stored
        .iter()
        .map(|v| {
            v.get("trace_id")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("stored record without trace_id: {v}"))
                .to_owned()
        })
        .collect()
}

/// Batches (one of them empty) come back as written, oldest first, each
/// record's JSON equal to [`AuditRecord::to_json`].
pub async fn batches_are_stored_in_order<S, R, RFut>(factory: impl StoreFactory<(S, R)>)
where
    S: AuditSink,
    R: Fn() -> RFut,
    RFut: Future<Output = Result<Vec<Value>, StoreError>>,
{
    let (pair, clock) = build(factory).await;
    let Ok((sink, read_back)) = std::sync::Arc::try_unwrap(pair) else {
        panic!("the sink pair is shared");
    };
    let first = records(&clock, "a", 2);
    let second = records(&clock, "b", 3);
    for batch in [&first[..], &[], &second[..]] {
        sink.write_batch(batch)
            .await
            .unwrap_or_else(|e| panic!("write_batch failed: {e}"));
    }
    let stored = read_back()
        .await
        .unwrap_or_else(|e| panic!("read back failed: {e}"));
    assert_eq!(trace_ids(&stored), ["a-0", "a-1", "b-0", "b-1", "b-2"]);
    let expected: Vec<Value> = first
        .iter()
        .chain(&second)
        .map(AuditRecord::to_json)
        .collect();
    assert_eq!(stored, expected);
}

/// Eight batches written at once all land, every record exactly once.
pub async fn concurrent_batches_all_land<S, R, RFut>(factory: impl StoreFactory<(S, R)>)
where
    S: AuditSink,
    R: Fn() -> RFut,
    RFut: Future<Output = Result<Vec<Value>, StoreError>>,
{
    let (pair, clock) = build(factory).await;
    let Ok((sink, read_back)) = std::sync::Arc::try_unwrap(pair) else {
        panic!("the sink pair is shared");
    };
    let sink = std::sync::Arc::new(sink);
    let results = in_parallel(8, |i| {
        let sink = sink.clone();
        let batch = records(&clock, &format!("w{i}"), 10);
        async move { sink.write_batch(&batch).await }
    })
    .await;
    assert!(results.iter().all(Result::is_ok), "every batch is written");
    let mut ids = trace_ids(
        &read_back()
            .await
            .unwrap_or_else(|e| panic!("read back failed: {e}")),
    );
    ids.sort();
    let mut expected: Vec<String> = (0..8)
        .flat_map(|w| (0..10).map(move |i| format!("w{w}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
}
