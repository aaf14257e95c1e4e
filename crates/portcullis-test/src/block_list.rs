//! Cases for [`BlockListStore`]: the contract on its trait documentation.

use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use portcullis_core::{BlockEntry, BlockListStore};

use crate::{StoreFactory, build, secs};

fn net(text: &str) -> IpNet {
    text.parse()
        .unwrap_or_else(|e| panic!("bad test network {text}: {e}"))
}

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("bad test address {text}: {e}"))
}

async fn block<S: BlockListStore>(
    store: &S,
    network: &str,
    until: Option<SystemTime>,
    reason: &str,
    now: SystemTime,
) {
    store
        .block(BlockEntry::new(net(network), until, reason, now))
        .await
        .unwrap_or_else(|e| panic!("block failed: {e}"));
}

async fn reason<S: BlockListStore>(store: &S, addr: &str, now: SystemTime) -> Option<String> {
    store
        .find(ip(addr), now)
        .await
        .unwrap_or_else(|e| panic!("find failed: {e}"))
        .map(|e| e.reason)
}

async fn listed<S: BlockListStore>(store: &S, now: SystemTime) -> Vec<String> {
    let mut reasons: Vec<_> = store
        .list(now)
        .await
        .unwrap_or_else(|e| panic!("list failed: {e}"))
        .into_iter()
        .map(|e| e.reason)
        .collect();
    reasons.sort();
    reasons
}

/// When several entries cover an address, the narrowest one in force
/// answers; an address no entry covers is `Ok(None)`.
pub async fn the_most_specific_entry_wins<S: BlockListStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    block(&*store, "10.0.0.0/8", None, "wide", now).await;
    block(
        &*store,
        "10.1.0.0/16",
        Some(secs(&clock, 3600)),
        "narrow",
        now,
    )
    .await;
    block(&*store, "10.1.2.3/32", Some(secs(&clock, 10)), "host", now).await;
    assert_eq!(
        reason(&*store, "10.1.2.3", now).await.as_deref(),
        Some("host")
    );
    assert_eq!(
        reason(&*store, "10.1.9.9", now).await.as_deref(),
        Some("narrow")
    );
    assert_eq!(
        reason(&*store, "10.200.0.1", now).await.as_deref(),
        Some("wide")
    );
    assert_eq!(reason(&*store, "11.0.0.1", now).await, None);
    // Once the host block ends, the next narrowest answers.
    let later = secs(&clock, 11);
    assert_eq!(
        reason(&*store, "10.1.2.3", later).await.as_deref(),
        Some("narrow")
    );
}

/// An ended block matches nothing and is not listed; a block without an
/// end holds.
pub async fn ended_blocks_do_not_match<S: BlockListStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 100);
    block(
        &*store,
        "192.0.2.1/32",
        Some(secs(&clock, 50)),
        "ended",
        secs(&clock, 0),
    )
    .await;
    block(&*store, "192.0.2.2/32", None, "forever", secs(&clock, 0)).await;
    assert_eq!(reason(&*store, "192.0.2.1", now).await, None);
    assert_eq!(
        reason(&*store, "192.0.2.2", now).await.as_deref(),
        Some("forever")
    );
    assert_eq!(listed(&*store, now).await, ["forever"]);
    assert_eq!(
        listed(&*store, secs(&clock, 10)).await,
        ["ended", "forever"]
    );
}

/// Blocking a network again replaces its entry.
pub async fn block_replaces_the_same_network<S: BlockListStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    block(&*store, "198.51.100.0/24", None, "first", now).await;
    block(
        &*store,
        "198.51.100.0/24",
        Some(secs(&clock, 60)),
        "second",
        now,
    )
    .await;
    assert_eq!(listed(&*store, now).await, ["second"]);
    let found = store.find(ip("198.51.100.77"), now).await.ok().flatten();
    assert_eq!(found.and_then(|e| e.until), Some(secs(&clock, 60)));
}

/// `unblock` returns the removed entry once, then `None`.
pub async fn unblock_returns_the_entry_once<S: BlockListStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    block(&*store, "203.0.113.9/32", None, "scanner", now).await;
    let first = store.unblock(net("203.0.113.9/32")).await;
    let first = first.unwrap_or_else(|e| panic!("unblock failed: {e}"));
    assert_eq!(
        first.map(|e| (e.network, e.reason, e.created_at)),
        Some((net("203.0.113.9/32"), "scanner".into(), now))
    );
    assert!(matches!(
        store.unblock(net("203.0.113.9/32")).await,
        Ok(None)
    ));
    assert_eq!(reason(&*store, "203.0.113.9", now).await, None);
}

/// IPv6 networks and hosts, and no confusion between families.
pub async fn ipv6_networks_and_hosts<S: BlockListStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    block(&*store, "2001:db8::/32", None, "v6 net", now).await;
    block(&*store, "2001:db8::1/128", None, "v6 host", now).await;
    block(&*store, "0.0.0.0/0", None, "all v4", now).await;
    assert_eq!(
        reason(&*store, "2001:db8::1", now).await.as_deref(),
        Some("v6 host")
    );
    assert_eq!(
        reason(&*store, "2001:db8:ffff::2", now).await.as_deref(),
        Some("v6 net")
    );
    assert_eq!(reason(&*store, "2001:db9::1", now).await, None);
    assert_eq!(
        reason(&*store, "192.0.2.1", now).await.as_deref(),
        Some("all v4")
    );
}
