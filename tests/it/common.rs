//! Shared test harness: the CDN started in this process on port 0 (its nodes' bound addresses
//! come from `outpost_node::Running`), or the real `outpost` binary for tests of the command
//! line, signals and logs (addresses read from its `ready` lines); both stopped on Drop. And a
//! scriptable origin on a real loopback socket that can also misbehave (hang, break a body,
//! send garbage).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Held by the tests that load the machine most (the disk tier's fsync-heavy ones) and by the
/// headless-browser test, whose live stream must start within its deadline: they never run at
/// the same time.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running CDN: in this process, or an `outpost` process.
pub struct Outpost {
    run: Run,
    pub nodes: HashMap<String, Node>,
    _dir: Option<tempfile::TempDir>,
}

enum Run {
    /// `Cdn::start` on a runtime of its own, in its own thread, so that a test that blocks its
    /// thread (or runs on a single-threaded runtime) cannot stall the CDN.
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    Process {
        child: Child,
        log: Arc<Mutex<Vec<String>>>,
    },
}

#[derive(Debug, Clone)]
pub struct Node {
    pub role: String,
    /// `http://addr` of the data listener.
    pub data: String,
    pub admin: String,
    /// `https://addr` of the HTTPS listener, for edges that serve HTTPS.
    pub https: Option<String>,
}

impl From<&outpost_node::NodeAddrs> for Node {
    fn from(addrs: &outpost_node::NodeAddrs) -> Self {
        Node {
            role: addrs.role.to_string(),
            data: addrs.data_url(),
            admin: addrs.admin_url().unwrap_or_else(|| "-".into()),
            https: addrs.https.map(|a| format!("https://{a}")),
        }
    }
}

/// Writes `toml` into a new directory; the state directory goes beside it unless the config
/// says where.
fn config_dir(
    toml: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Option<std::path::PathBuf>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outpost.toml");
    std::fs::write(&path, toml).unwrap();
    let state = (!toml.contains("state_dir")).then(|| dir.path().join("state"));
    (dir, path, state)
}

impl Outpost {
    /// The CDN of `toml` started in this process with `Cdn::start`, as `outpost up --config`
    /// starts it; `expect` is how many nodes it must have.
    pub fn up(toml: &str, expect: usize) -> Self {
        let (dir, path, state_dir) = config_dir(toml);
        let topology = outpost_node::Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let overrides = outpost_node::Overrides {
            state_dir,
            config_path: Some(path),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                match outpost_node::Cdn::start(&topology, &overrides).await {
                    Ok(running) => {
                        let nodes: Vec<_> = running.nodes().to_vec();
                        let _ = ready_tx.send(Ok(nodes));
                        let _ = stopped.await;
                        running.drain(Duration::from_millis(500)).await;
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error.to_string()));
                    }
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(500));
        });
        let nodes = match ready_rx.recv() {
            Ok(Ok(nodes)) => nodes,
            Ok(Err(error)) => panic!("the CDN did not start: {error}"),
            Err(_) => panic!("the CDN's thread ended before it started"),
        };
        let nodes: HashMap<String, Node> =
            nodes.iter().map(|n| (n.name.clone(), n.into())).collect();
        assert!(
            nodes.len() >= expect,
            "{} nodes, expected {expect}: {nodes:?}",
            nodes.len()
        );
        Self {
            run: Run::InProcess {
                stop: Some(stop),
                thread: Some(thread),
            },
            nodes,
            _dir: Some(dir),
        }
    }

    /// `outpost up --config` with `toml` as a process, waiting for `expect` nodes to be ready:
    /// for tests of signals, exit status and logs.
    pub fn up_process(toml: &str, expect: usize) -> Self {
        let (dir, path, state) = config_dir(toml);
        let mut args = vec![
            "up".to_owned(),
            "--config".into(),
            path.display().to_string(),
        ];
        if let Some(state) = state {
            args.extend(["--state-dir".into(), state.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut outpost = Self::spawn(&args, expect);
        outpost._dir = Some(dir);
        outpost
    }

    /// `outpost edge --config CONFIG --name NAME` as a process: one node of a topology file.
    pub fn spawn_edge(config: &std::path::Path, name: &str) -> Self {
        let config = config.to_str().expect("a UTF-8 path");
        Self::spawn(&["edge", "--config", config, "--name", name], 1)
    }

    /// Runs `outpost ARGS`, waiting for `expect` "ready" lines.
    pub fn spawn(args: &[&str], expect: usize) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning outpost");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(node) = parse_ready(&line) {
                    let _ = ready_tx.send(node);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut nodes = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while nodes.len() < expect {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(left) {
                Ok((name, node)) => {
                    nodes.insert(name, node);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "outpost did not get ready; log:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            }
        }
        Self {
            run: Run::Process { child, log },
            nodes,
            _dir: None,
        }
    }

    pub fn data(&self, node: &str) -> &str {
        &self
            .nodes
            .get(node)
            .unwrap_or_else(|| panic!("no node {node}"))
            .data
    }

    /// The HTTPS address (`host:port`) of an edge.
    pub fn https(&self, node: &str) -> String {
        self.nodes[node]
            .https
            .clone()
            .expect("node serves no HTTPS")
            .trim_start_matches("https://")
            .to_owned()
    }

    pub fn admin(&self, node: &str) -> &str {
        &self.nodes[node].admin
    }

    /// The Prometheus text `node`'s (plain-HTTP) admin listener serves.
    pub async fn metrics(&self, node: &str) -> String {
        get_text(&client(), format!("{}/metrics", self.admin(node))).await
    }

    /// The config file the CDN was started with.
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir
            .as_ref()
            .expect("started from a config")
            .path()
            .join("outpost.toml")
    }

    fn child(&self) -> &Child {
        match &self.run {
            Run::Process { child, .. } => child,
            Run::InProcess { .. } => panic!("signals and logs need Outpost::up_process"),
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn log(&self) -> String {
        match &self.run {
            Run::Process { log, .. } => log.lock().unwrap().join("\n"),
            Run::InProcess { .. } => panic!("logs need Outpost::up_process"),
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        self.signal("TERM");
        let Run::Process { child, .. } = &mut self.run else {
            unreachable!("signal checked the kind")
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Outpost {
    fn drop(&mut self) {
        match &mut self.run {
            Run::Process { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Run::InProcess { stop, thread } => {
                drop(stop.take());
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

fn parse_ready(line: &str) -> Option<(String, Node)> {
    let rest = &line[line.find("ready node=")?..];
    let mut fields = HashMap::new();
    for part in rest.split_whitespace() {
        if let Some((k, v)) = part.split_once('=') {
            fields.insert(k, v);
        }
    }
    Some((
        fields.get("node")?.to_string(),
        Node {
            role: fields.get("role")?.to_string(),
            data: fields.get("data")?.to_string(),
            admin: fields.get("admin")?.to_string(),
            https: fields.get("https").map(|s| s.to_string()),
        },
    ))
}

/// A topology with an external origin at `origin`, `parents` parents and `edges` edges, all on
/// 127.0.0.1 port 0, followed by `extra` TOML (e.g. a `[cache]` table).
pub fn topology(origin: &str, parents: usize, edges: usize, extra: &str) -> String {
    let mut toml = String::from("[admin]\ntoken = \"test-token\"\n\n");
    toml.push_str(extra);
    toml.push_str(&format!("\n[origin]\nurl = \"{origin}\"\n"));
    for i in 0..parents {
        toml.push_str(&format!(
            "\n[[parents]]\nname = \"parent-{i}\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n"
        ));
    }
    for i in 0..edges {
        toml.push_str(&format!(
            "\n[[edges]]\nname = \"edge-{i}\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n"
        ));
    }
    toml
}

/// A topology with Outpost's own origin serving the demo site, `parents` parents and one edge,
/// `edge-0`, all on 127.0.0.1 port 0 (admin token `t`).
pub fn demo_topology(parents: usize) -> String {
    let mut toml = String::from(
        "[admin]\ntoken = \"t\"\n[origin]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n",
    );
    for i in 0..parents {
        toml.push_str(&format!(
            "[[parents]]\nname = \"parent-{i}\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n"
        ));
    }
    toml.push_str(
        "[[edges]]\nname = \"edge-0\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n",
    );
    toml
}

/// A request as the test origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the test origin does with a request.
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Declares `declared` bytes, sends `sent`, then closes the connection.
    Broken {
        headers: Vec<(String, String)>,
        declared: usize,
        sent: Vec<u8>,
    },
    /// Sends `first`, waits for `release`, then sends `rest`.
    Held {
        headers: Vec<(String, String)>,
        first: Vec<u8>,
        release: Arc<Notify>,
        rest: Vec<u8>,
    },
    /// A chunked body (no Content-Length): `chunks` chunks of `chunk` bytes, `every` apart.
    Chunked {
        headers: Vec<(String, String)>,
        chunk: usize,
        chunks: usize,
        every: Duration,
    },
    /// Waits, then answers as the inner reply does.
    Delayed(Duration, Box<Reply>),
    /// Waits until as many requests as the barrier counts are waiting at it, then answers as
    /// the inner reply does; a 504 if they are not all there within ten seconds.
    Gated(Arc<tokio::sync::Barrier>, Box<Reply>),
    /// Never answers.
    Hang,
    /// Bytes that are not HTTP, then close.
    Garbage(Vec<u8>),
}

impl Reply {
    pub fn ok(headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Self {
        Self::Full {
            status: 200,
            headers: owned(headers),
            body: body.into(),
        }
    }

    pub fn status(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Self {
        Self::Full {
            status,
            headers: owned(headers),
            body: body.into(),
        }
    }
}

pub fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A scriptable origin: `script(request, n)` decides the reply to the n-th request (from 1).
pub struct TestOrigin {
    pub url: String,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestOrigin {
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (h, s) = (hits.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, script.clone(), h.clone(), s.clone()));
            }
        });
        Self { url, hits, seen }
    }

    /// Requests answered, health checks excluded.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    mut stream: TcpStream,
    script: Arc<Script>,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        if request.target == "/_outpost/health" {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            continue;
        }
        let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
        seen.lock().unwrap().push(request.clone());
        let mut reply = script(&request, n);
        let reply = loop {
            reply = match reply {
                Reply::Delayed(wait, inner) => {
                    tokio::time::sleep(wait).await;
                    *inner
                }
                Reply::Gated(gate, inner) => {
                    match tokio::time::timeout(Duration::from_secs(10), gate.wait()).await {
                        Ok(_) => *inner,
                        Err(_) => Reply::status(504, &[], "gate timed out"),
                    }
                }
                ready => break ready,
            };
        };
        match reply {
            Reply::Delayed(..) | Reply::Gated(..) => unreachable!("unwrapped above"),
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} X\r\n");
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                if status != 304 {
                    head.push_str(&format!("content-length: {}\r\n", body.len()));
                }
                head.push_str("\r\n");
                let mut bytes = head.into_bytes();
                if request.method != "HEAD" && status != 304 {
                    bytes.extend_from_slice(&body);
                }
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::Broken {
                headers,
                declared,
                sent,
            } => {
                let mut head = String::from("HTTP/1.1 200 OK\r\n");
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str(&format!("content-length: {declared}\r\n\r\n"));
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&sent).await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            Reply::Held {
                headers,
                first,
                release,
                rest,
            } => {
                let mut head = String::from("HTTP/1.1 200 OK\r\n");
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str(&format!(
                    "content-length: {}\r\n\r\n",
                    first.len() + rest.len()
                ));
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&first).await;
                let _ = stream.flush().await;
                release.notified().await;
                if stream.write_all(&rest).await.is_err() {
                    return;
                }
            }
            Reply::Chunked {
                headers,
                chunk,
                chunks,
                every,
            } => {
                let mut head = String::from("HTTP/1.1 200 OK\r\n");
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("transfer-encoding: chunked\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let data = vec![b'c'; chunk];
                for _ in 0..chunks {
                    let mut frame = format!("{chunk:x}\r\n").into_bytes();
                    frame.extend_from_slice(&data);
                    frame.extend_from_slice(b"\r\n");
                    if stream.write_all(&frame).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
                if stream.write_all(b"0\r\n\r\n").await.is_err() {
                    return;
                }
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Garbage(bytes) => {
                let _ = stream.write_all(&bytes).await;
                return;
            }
        }
    }
}

async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Seen> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = request.parse(buffer) {
            let seen_headers: Vec<(String, String)> = request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let method = request.method?.to_owned();
            let target = request.path?.to_owned();
            let length: usize = seen_headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let chunked = seen_headers
                .iter()
                .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
            buffer.drain(..head_len);
            let body = if chunked {
                read_chunked(stream, buffer).await?
            } else {
                fill(stream, buffer, length).await?;
                buffer.drain(..length).collect()
            };
            return Some(Seen {
                method,
                target,
                headers: seen_headers,
                body,
            });
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, want: usize) -> Option<()> {
    while buffer.len() < want {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(())
}

/// Decodes a chunked body (no trailers) from the front of `buffer`.
async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buffer.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            let have = buffer.len();
            fill(stream, buffer, have + 1).await?;
        };
        let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buffer.drain(..line_end + 2);
        fill(stream, buffer, size + 2).await?;
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
        if size == 0 {
            return Some(body);
        }
    }
}

/// Sends raw bytes on a new connection to `addr` (`http://host:port` or `host:port`) and
/// returns everything the node sent back before it closed (requests should say
/// `connection: close`), or what came within 8 s.
pub async fn raw(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// An HTTP/2 connection (prior knowledge, or after ALPN chose h2) over `stream`, driven in
/// the background; requests have empty bodies.
pub async fn http2<S>(
    stream: S,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}

/// The first line of a raw answer.
/// The value of the first series in Prometheus text `metrics` that starts with `series` (a
/// name, or a name and its labels), 0 if there is none.
pub fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

pub fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

/// The Cache-Status header of a response.
pub fn cache_status(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// GETs `url` with `http` and returns the body as text; any failure fails the test.
pub async fn get_text(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Runs `outpost ARGS --token TOKEN` with `--admin URL` for each of `admins` (the admin CLI:
/// workers, push, releases); returns whether it succeeded and its stdout and stderr.
pub fn admin_command(args: &[&str], token: &str, admins: &[&str]) -> (bool, String) {
    let mut all = args.to_vec();
    all.extend(["--token", token]);
    for admin in admins {
        all.extend(["--admin", admin]);
    }
    outpost_command(&all)
}

/// Runs `outpost ARGS`; returns whether it succeeded and its stdout and stderr.
pub fn outpost_command(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}
