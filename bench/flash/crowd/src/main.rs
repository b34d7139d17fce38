//! crowd: CLIENTS connections spread over the edges, all sent `GET PATH` at the same moment;
//! prints, for each, the monotonic time (CLOCK_MONOTONIC, seconds) its first body byte arrived,
//! then `complete N of CLIENTS` (those that got a 200 and SIZE bytes).
//!
//!   crowd EDGE[,EDGE...] PATH CLIENTS SIZE

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn monotonic() -> f64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    now.tv_sec() as f64 + now.tv_nsec() as f64 / 1e9
}

async fn one(edge: String, path: Arc<str>, size: usize, go: Arc<tokio::sync::Barrier>) -> Option<f64> {
    let mut stream = tokio::net::TcpStream::connect(&edge).await.ok()?;
    stream.set_nodelay(true).ok()?;
    go.wait().await;
    let request = format!("GET {path} HTTP/1.1\r\nhost: www.outpost.test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut first = None;
    let mut body = 0usize;
    loop {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            break;
        }
        if first.is_none() {
            head.extend_from_slice(&buffer[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                if !head.starts_with(b"HTTP/1.1 200") {
                    return None;
                }
                body = head.len() - end - 4;
                if body > 0 {
                    first = Some(monotonic());
                }
            }
            continue;
        }
        body += n;
        if first.is_none() && body > 0 {
            first = Some(monotonic());
        }
    }
    if first.is_none() && body > 0 {
        first = Some(monotonic());
    }
    (body == size).then_some(first?)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, edges, path, clients, size] = &args[..] else {
        eprintln!("usage: crowd EDGE[,EDGE...] PATH CLIENTS SIZE");
        std::process::exit(2);
    };
    let edges: Vec<String> = edges.split(',').map(str::to_owned).collect();
    let clients: usize = clients.parse().expect("CLIENTS");
    let size: usize = size.parse().expect("SIZE");
    let path: Arc<str> = path.as_str().into();
    let go = Arc::new(tokio::sync::Barrier::new(clients));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        tasks.spawn(one(edges[i % edges.len()].clone(), path.clone(), size, go.clone()));
    }
    let mut complete = 0;
    while let Some(result) = tasks.join_next().await {
        if let Ok(Some(first)) = result {
            println!("first_byte {first:.6}");
            complete += 1;
        }
    }
    println!("complete {complete} of {clients}");
}
