//! A TCP proxy on loopback that a test can cut: the backend "stops" for
//! the app (live connections dropped, new ones closed at once) while the
//! real server — shared with other tests — keeps running and keeps its data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards `127.0.0.1:<port>` to an upstream address until cut.
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut: live connections watch it and drop.
    epoch: watch::Sender<u64>,
}

impl FaultProxy {
    /// Starts forwarding to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let (epoch, _) = watch::channel(0u64);
        let proxy = Self { addr, cut, epoch };
        let (cut, epoch) = (Arc::clone(&proxy.cut), proxy.epoch.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut changed = epoch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = changed.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    /// The address the app connects to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The backend "stops": every live connection is dropped, new ones are
    /// closed as soon as they are accepted.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// The backend is back.
    pub(crate) fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `url` with its `host:port` replaced by `addr`, and the original
/// `host:port` resolved: `redis://127.0.0.1:6379/0` or
/// `postgres://user:pw@127.0.0.1:5432/test`.
pub(crate) fn reroute(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, hostport)) => (format!("{user}@"), hostport),
        None => (String::new(), authority),
    };
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .expect("resolve the backend address")
        .next()
        .expect("one backend address");
    (format!("{scheme}://{userinfo}{addr}{path}"), upstream)
}
