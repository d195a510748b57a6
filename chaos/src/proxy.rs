//! A loopback TCP proxy between one agent and the servers: the network the
//! suite cuts, slows and re-points.
//!
//! Modes: `Pass` forwards bytes; `Drop` closes every open connection and
//! closes new ones at once (the agent sees resets, as across a cut link);
//! `Delay` holds each chunk for a while in both directions. Re-pointing the
//! upstream (a server died, another serves) also closes what is open, as a
//! load balancer's health check would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Drop,
    Delay(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Route {
    mode: Mode,
    upstream: SocketAddr,
    /// Raised whenever open connections must be closed.
    epoch: u64,
}

/// A running proxy; dropping it stops accepting.
pub struct Proxy {
    pub addr: SocketAddr,
    route: watch::Sender<Route>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Arc<Self>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (route, rx) = watch::channel(Route {
            mode: Mode::Pass,
            upstream,
            epoch: 0,
        });
        let task = tokio::spawn(accept_loop(listener, rx));
        Ok(Arc::new(Self { addr, route, task }))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn upstream(&self) -> SocketAddr {
        self.route.borrow().upstream
    }

    /// Switches the mode; entering `Drop` closes every open connection.
    pub fn set_mode(&self, mode: Mode) {
        self.route.send_modify(|r| {
            if mode == Mode::Drop {
                r.epoch += 1;
            }
            r.mode = mode;
        });
    }

    /// Points new connections at `upstream` and closes the open ones.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.route.send_modify(|r| {
            r.upstream = upstream;
            r.epoch += 1;
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, rx: watch::Receiver<Route>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let route = *rx.borrow();
        if route.mode == Mode::Drop {
            drop(client);
            continue;
        }
        let rx = rx.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(route.upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = pipe(cr, sw, rx.clone());
            let down = pipe(sr, cw, rx.clone());
            let mut closed = rx;
            // Ends when either direction ends or the epoch moves on.
            tokio::select! {
                _ = up => {}
                _ = down => {}
                _ = closed.wait_for(|r| r.epoch != route.epoch) => {}
            }
        });
    }
}

/// Copies one direction, holding each chunk while the mode says `Delay`.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rx: watch::Receiver<Route>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mode = rx.borrow().mode;
        if let Mode::Delay(d) = mode {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
