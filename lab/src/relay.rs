//! A bad link, made in user space because this kernel has no netem qdisc: a TCP relay in front
//! of a node that adds latency and drops connections, per client address, so one edge's path
//! to a parent can go bad while the others stay good.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What a link does to the connections that cross it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Added round-trip time: half on the way there, half on the way back.
    pub delay: Duration,
    /// Share of new connections reset at once (0 to 1).
    pub drop: f64,
}

/// The impairments of a relay's links, by the client's address; changed while it runs.
#[derive(Debug, Clone, Default)]
pub struct Links(Arc<Mutex<HashMap<IpAddr, Impairment>>>);

impl Links {
    /// Impairs the link from `client`; [`Impairment::default`] heals it.
    pub fn set(&self, client: IpAddr, impairment: Impairment) {
        let mut links = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if impairment == Impairment::default() {
            links.remove(&client);
        } else {
            links.insert(client, impairment);
        }
    }

    fn get(&self, client: IpAddr) -> Impairment {
        let links = self.0.lock().unwrap_or_else(|e| e.into_inner());
        links.get(&client).copied().unwrap_or_default()
    }
}

/// Relays every connection to `listener` to `target` through `links` until the runtime ends.
pub async fn relay(listener: TcpListener, target: SocketAddr, links: Links) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        let impairment = links.get(peer.ip());
        if impairment.drop > 0.0 && fastrand::f64() < impairment.drop {
            // A reset, as a link that loses the connection (a zero linger does not block).
            #[allow(deprecated)]
            let _ = client.set_linger(Some(Duration::ZERO));
            drop(client);
            continue;
        }
        tokio::spawn(async move {
            let one_way = impairment.delay / 2;
            tokio::time::sleep(one_way).await;
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pipe(client_read, server_write, one_way),
                pipe(server_read, client_write, one_way)
            );
        });
    }
}

/// Copies `from` to `to`, each piece `delay` later than it was read (a line with latency, not
/// a slow one: pieces keep their order and the rate is not limited).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let piece = Bytes::copy_from_slice(&buffer[..n]);
                    if sender.send((Instant::now() + delay, piece)).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, piece)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&piece).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
