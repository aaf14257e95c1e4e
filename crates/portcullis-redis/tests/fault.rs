//! Fault injection against a private `redis-server` on a free loopback
//! port (never the shared one): operations succeed, fail fast and closed
//! while the server is stopped or frozen, and succeed again through the
//! same `RedisBackend` once it is back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use portcullis_core::{
    AttemptKey, AttemptPolicy, AttemptStore, AuditRecord, AuditSink, BlockListStore,
    CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore, EventKind, RateLimitStore, RateQuota,
    RevocationStore, StoreError, StoreErrorKind, TokenRef,
};
use portcullis_redis::RedisBackend;

/// A redis-server we started; killed on drop.
struct Server {
    child: Option<Child>,
}

impl Server {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = Self { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` with the `kill` binary; `false` when there is none.
    fn signal(&self, signal: &str) -> bool {
        match Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
        {
            Ok(status) => {
                assert!(status.success(), "kill {signal} failed");
                true
            }
            Err(_) => false,
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Thaw first in case a failed assertion left it stopped.
            let _ = Command::new("kill")
                .args(["-CONT", &self.pid().to_string()])
                .status();
        }
        self.stop();
    }
}

fn redis_server_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not installed, and CI requires the fault test to run"
        );
        eprintln!("SKIPPED fault test: redis-server is not installed");
    }
    found
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One operation of every store, stopping at the first error.
async fn exercise(backend: &RedisBackend, round: u32) -> Result<(), StoreError> {
    let now = SystemTime::now();
    let later = now + Duration::from_secs(60);
    let id = format!("tok-{round}");
    let revocations = backend.revocations();
    revocations.revoke_token(&id, later).await?;
    let token = TokenRef {
        token_id: Some(&id),
        family: None,
        subject: "u",
        issued_at: Some(now),
    };
    assert!(revocations.is_revoked(&token).await?);
    let attempts = backend.attempts();
    let key = AttemptKey::Account(format!("acct-{round}").into());
    attempts
        .record_failure(&key, &AttemptPolicy::default(), false, now)
        .await?;
    backend
        .block_list()
        .find("192.0.2.1".parse().unwrap(), now)
        .await?;
    let mut digest = [0u8; 32];
    digest[..4].copy_from_slice(&round.to_be_bytes());
    let digest = CsrfTokenDigest::from_bytes(digest);
    let csrf = backend.csrf_tokens();
    csrf.issue(CsrfTokenRecord::new("s", digest, later)).await?;
    assert!(csrf.validate("s", &digest).await?);
    backend
        .rate_limit()
        .check(
            "ip:192.0.2.1",
            &RateQuota::new(Duration::from_millis(1), 1000),
            now,
        )
        .await?;
    backend
        .audit()
        .write_batch(&[AuditRecord::new(EventKind::AuthFailure, now, "trace")])
        .await?;
    backend.ping().await
}

/// Runs `exercise`, failing the test if it takes longer than `bound`.
async fn timed(backend: &RedisBackend, round: u32, bound: Duration) -> Result<(), StoreError> {
    let started = Instant::now();
    let result = tokio::time::timeout(bound, exercise(backend, round))
        .await
        .unwrap_or_else(|_| panic!("round {round}: an operation hung for {bound:?}"));
    eprintln!(
        "round {round}: {:?} after {:?}",
        result.as_ref().map_err(StoreError::kind),
        started.elapsed()
    );
    result
}

fn assert_fails_closed(result: Result<(), StoreError>, what: &str) {
    let error = result.expect_err(what);
    assert!(
        matches!(
            error.kind(),
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout
        ),
        "{what}: {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_frozen_and_restarted_server() {
    if !redis_server_available() {
        return;
    }
    let port = free_port();
    let mut server = Server::start(port);
    let backend = RedisBackend::connect(format!("redis://127.0.0.1:{port}"), "fault")
        .await
        .unwrap();
    timed(&backend, 0, Duration::from_secs(5)).await.unwrap();

    // Stopped: every round fails within a few seconds, never hangs.
    server.stop();
    for round in 1..=3 {
        let started = Instant::now();
        let result = timed(&backend, round, Duration::from_secs(5)).await;
        assert_fails_closed(result, "a stopped server");
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    // Restarted on the same port: the same backend reconnects.
    let server = Server::start(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut round = 10;
    loop {
        round += 1;
        if timed(&backend, round, Duration::from_secs(5)).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no reconnection after restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for round in 20..23 {
        timed(&backend, round, Duration::from_secs(5))
            .await
            .unwrap();
    }

    // Frozen (SIGSTOP): the connection is up but nothing answers; the
    // timeouts turn that into errors.
    if !server.signal("-STOP") {
        eprintln!("SKIPPED the freeze part: no `kill` binary to send SIGSTOP");
        return;
    }
    let started = Instant::now();
    let result = timed(&backend, 30, Duration::from_secs(6)).await;
    assert_fails_closed(result, "a frozen server");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(server.signal("-CONT"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut round = 40;
    loop {
        round += 1;
        if timed(&backend, round, Duration::from_secs(5)).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery after the freeze");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_fast_at_connect_and_lazily() {
    if !redis_server_available() {
        return;
    }
    // Nothing listens on this port.
    let url = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let error = RedisBackend::connect(url.clone(), "fault")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.kind(),
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    let backend = RedisBackend::builder(url, "fault").connect_lazy().unwrap();
    let started = Instant::now();
    assert_fails_closed(backend.ping().await, "no server");
    assert!(started.elapsed() < Duration::from_secs(4));
}
