//! Building the lab, running its nodes, breaking them, and taking it all down again.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::LabError;
use crate::client;
use crate::netns::{self, InNamespace};
use crate::plan::{self, HOSTS, Host, HostRole};
use crate::relay::{Impairment, Links};

/// Namespaces of a lab are named `olab<pid>-<n>`: the pid tells a lab whose process is gone.
const PREFIX: &str = "olab";

/// A running lab. Dropping it kills every node and removes every namespace it made.
pub struct Lab {
    id: String,
    dir: PathBuf,
    binary: PathBuf,
    nodes: Mutex<HashMap<&'static str, Child>>,
    relays: Vec<Relay>,
}

/// The relay in front of one parent.
struct Relay {
    parent: &'static str,
    links: Links,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<InNamespace<()>>,
}

impl Lab {
    /// Builds the hosts and their links, writes the topology and the origin's content into
    /// `dir`, and starts every node with `binary` (an `outpost` executable), waiting until each
    /// answers its health check.
    pub fn start(binary: &Path, dir: &Path) -> Result<Self, LabError> {
        if !crate::is_root() {
            return Err(LabError::NotRoot);
        }
        sweep_abandoned();
        let mut lab = Lab {
            id: format!("{PREFIX}{}", std::process::id()),
            dir: dir.to_owned(),
            binary: binary.to_owned(),
            nodes: Mutex::new(HashMap::new()),
            relays: Vec::new(),
        };
        lab.build_network()?;
        lab.write_files()?;
        lab.start_relays()?;
        lab.run_outpost(&["certs", "init"])?;
        for host in HOSTS.iter().filter(|h| h.role != HostRole::Client) {
            lab.start_node(host.name)?;
        }
        for host in HOSTS.iter().filter(|h| h.role != HostRole::Client) {
            lab.wait_up(host.name, Duration::from_secs(30))?;
        }
        Ok(lab)
    }

    /// The lab's working directory: topology, content, state and one log per node.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn topology_path(&self) -> PathBuf {
        self.dir.join("lab.toml")
    }

    /// The content directory the origin serves: change a file there to change the origin.
    pub fn site(&self) -> PathBuf {
        self.dir.join("site")
    }

    /// The namespace of host `name`.
    pub fn namespace(&self, name: &str) -> Result<String, LabError> {
        let index = HOSTS
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| LabError::UnknownHost(name.to_owned()))?;
        Ok(format!("{}-{index}", self.id))
    }

    /// Runs `task` on host `name` (its sockets are that host's) and returns its result.
    pub fn on<T, F, Fut>(&self, name: &str, task: F) -> Result<T, LabError>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
    {
        netns::run_in(&self.namespace(name)?, task)
    }

    /// Starts `task` on host `name` and returns at once.
    pub fn spawn_on<T, F, Fut>(&self, name: &str, task: F) -> Result<InNamespace<T>, LabError>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
    {
        netns::spawn_in(&self.namespace(name)?, task)
    }

    fn build_network(&self) -> Result<(), LabError> {
        let switch = format!("{}-switch", self.id);
        netns::create(&switch)?;
        netns::ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        netns::ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (index, host) in HOSTS.iter().enumerate() {
            let namespace = self.namespace(host.name)?;
            netns::create(&namespace)?;
            let port = format!("p{index}");
            netns::ip(&[
                "link", "add", "eth0", "netns", &namespace, "type", "veth", "peer", "name", &port,
                "netns", &switch,
            ])?;
            netns::ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
            let address = format!("{}/32", host.address);
            netns::ip(&["-n", &namespace, "addr", "add", &address, "dev", "eth0"])?;
            netns::ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
            // Every host is on the one bridge: everything is on-link.
            netns::ip(&["-n", &namespace, "route", "add", "default", "dev", "eth0"])?;
        }
        Ok(())
    }

    fn write_files(&self) -> Result<(), LabError> {
        let io = |source| LabError::Tool {
            tool: "lab directory",
            source,
        };
        std::fs::create_dir_all(self.dir.join("logs")).map_err(io)?;
        std::fs::create_dir_all(self.site().join("lab/short")).map_err(io)?;
        std::fs::create_dir_all(self.site().join("lab/purge")).map_err(io)?;
        for i in 0..PURGED_OBJECTS {
            std::fs::write(
                self.site().join(format!("lab/purge/obj-{i}.txt")),
                format!("purged object {i}, version 1\n"),
            )
            .map_err(io)?;
        }
        std::fs::write(self.topology_path(), plan::topology(&self.dir)).map_err(io)?;
        for i in 0..OBJECTS {
            let body = format!("object {i}, version 1\n");
            std::fs::write(self.site().join(format!("lab/obj-{i}.txt")), &body).map_err(io)?;
            std::fs::write(self.site().join(format!("lab/short/obj-{i}.txt")), &body)
                .map_err(io)?;
        }
        Ok(())
    }

    fn start_relays(&mut self) -> Result<(), LabError> {
        for host in HOSTS.iter().filter(|h| h.role == HostRole::Parent) {
            let links = Links::default();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let listen = SocketAddr::new(IpAddr::V4(host.address), plan::HTTP_PORT);
            let target = SocketAddr::from(([127, 0, 0, 1], plan::HTTP_PORT));
            let relay_links = links.clone();
            let (bound, was_bound) = std::sync::mpsc::channel();
            let task = self.spawn_on(host.name, move || async move {
                let listener = match tokio::net::TcpListener::bind(listen).await {
                    Ok(listener) => {
                        let _ = bound.send(Ok(()));
                        listener
                    }
                    Err(error) => {
                        let _ = bound.send(Err(error));
                        return;
                    }
                };
                tokio::select! {
                    () = crate::relay::relay(listener, target, relay_links) => {}
                    _ = stopped => {}
                }
            })?;
            was_bound
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| {
                    LabError::Scenario(format!("the relay of {} did not start", host.name))
                })?
                .map_err(|source| LabError::Tool {
                    tool: "relay",
                    source,
                })?;
            self.relays.push(Relay {
                parent: host.name,
                links,
                stop: Some(stop),
                task: Some(task),
            });
        }
        Ok(())
    }

    /// Makes the link from host `from` to parent `parent` bad (or heals it with
    /// [`Impairment::default`]).
    pub fn impair(&self, from: &str, parent: &str, impairment: Impairment) -> Result<(), LabError> {
        let from = plan::find(from).ok_or_else(|| LabError::UnknownHost(from.to_owned()))?;
        let relay = self
            .relays
            .iter()
            .find(|r| r.parent == parent)
            .ok_or_else(|| LabError::UnknownHost(parent.to_owned()))?;
        relay.links.set(IpAddr::V4(from.address), impairment);
        Ok(())
    }

    /// Runs `outpost ARGS --config lab.toml` in the root namespace (no network use: `certs`).
    fn run_outpost(&self, args: &[&str]) -> Result<(), LabError> {
        let output = Command::new(&self.binary)
            .args(args)
            .arg("--config")
            .arg(self.topology_path())
            .output()
            .map_err(|source| LabError::Tool {
                tool: "outpost",
                source,
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(LabError::Command {
                command: format!("outpost {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    fn log_path(&self, node: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{node}.log"))
    }

    /// Starts node `name` as its own process on its host (again, after [`kill`](Self::kill)).
    pub fn start_node(&self, name: &str) -> Result<(), LabError> {
        let host = plan::find(name).ok_or_else(|| LabError::UnknownHost(name.to_owned()))?;
        let Some(command) = host.role.command() else {
            return Err(LabError::UnknownHost(name.to_owned()));
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .map_err(|source| LabError::Tool {
                tool: "node log",
                source,
            })?;
        let err = log.try_clone().map_err(|source| LabError::Tool {
            tool: "node log",
            source,
        })?;
        let mut process = Command::new("ip");
        process
            .args(["netns", "exec", &self.namespace(name)?])
            .arg(&self.binary)
            .arg(command)
            .arg("--config")
            .arg(self.topology_path());
        if matches!(host.role, HostRole::Parent | HostRole::Edge) {
            process.args(["--name", name]);
        }
        let child = process
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Tool {
                tool: "ip netns exec",
                source,
            })?;
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.name, child);
        Ok(())
    }

    /// Kills node `name` at once (SIGKILL: no draining, as a crash).
    pub fn kill(&self, name: &str) -> Result<(), LabError> {
        let child = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Waits until node `name` answers its health check.
    pub fn wait_up(&self, name: &str, within: Duration) -> Result<Duration, LabError> {
        let started = Instant::now();
        loop {
            if self.is_up(name)? {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                return Err(LabError::NotUp {
                    node: name.to_owned(),
                    secs: within.as_secs(),
                    log: self.log_path(name).display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether node `name` answers its health check now (asked from the operator's host).
    pub fn is_up(&self, name: &str) -> Result<bool, LabError> {
        let host = plan::find(name).ok_or_else(|| LabError::UnknownHost(name.to_owned()))?;
        let target = match host.role {
            HostRole::Anycast => {
                let addr = SocketAddr::new(IpAddr::V4(plan::ANYCAST), plan::HTTP_PORT);
                (addr, outpost_health_path())
            }
            _ => match plan::admin_addr(name) {
                Some(addr) => (addr, "/health"),
                None => return Err(LabError::UnknownHost(name.to_owned())),
            },
        };
        self.on("operator", move || async move {
            client::get(target.0, "lab", target.1, Duration::from_millis(500))
                .await
                .is_ok_and(|reply| reply.status == 200)
        })
    }

    /// Takes host `name`'s link to the bridge down (`up = false`) or up again: the host is cut
    /// off from every other, its processes keep running.
    pub fn set_link(&self, name: &str, up: bool) -> Result<(), LabError> {
        let namespace = self.namespace(name)?;
        netns::ip(&[
            "-n",
            &namespace,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ])?;
        if up {
            // The default route went with the link.
            let _ = netns::ip(&[
                "-n", &namespace, "route", "replace", "default", "dev", "eth0",
            ]);
        }
        Ok(())
    }

    /// Cuts the path between hosts `a` and `b` (`cut = false` heals it) with a blackhole
    /// route on each side: both keep reaching every other host.
    pub fn partition(&self, a: &str, b: &str, cut: bool) -> Result<(), LabError> {
        for (from, to) in [(a, b), (b, a)] {
            let namespace = self.namespace(from)?;
            let to = format!("{}/32", self.host(to)?.address);
            let verb = if cut { "add" } else { "del" };
            netns::ip(&["-n", &namespace, "route", verb, "blackhole", &to])?;
        }
        Ok(())
    }

    /// Host `name`.
    pub fn host(&self, name: &str) -> Result<&'static Host, LabError> {
        plan::find(name).ok_or_else(|| LabError::UnknownHost(name.to_owned()))
    }
}

/// The data-path health check every node answers.
fn outpost_health_path() -> &'static str {
    "/_outpost/health"
}

/// How many objects the origin has under `/lab/` and under [`plan::SHORT_PATH`].
pub const OBJECTS: usize = 300;
/// How many objects the origin has under `/lab/purge/`, each `version 1` at first.
pub const PURGED_OBJECTS: usize = 10;

impl Drop for Lab {
    fn drop(&mut self) {
        let nodes: Vec<_> = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, mut child) in nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for relay in &mut self.relays {
            if let Some(stop) = relay.stop.take() {
                let _ = stop.send(());
            }
            if let Some(task) = relay.task.take() {
                let _ = task.join();
            }
        }
        remove_namespaces(&format!("{}-", self.id));
    }
}

/// Kills whatever runs in, and removes, every namespace whose name starts with `prefix`.
fn remove_namespaces(prefix: &str) {
    for namespace in netns::existing() {
        if !namespace.starts_with(prefix) {
            continue;
        }
        if let Ok(output) = Command::new("ip")
            .args(["netns", "pids", &namespace])
            .output()
        {
            for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        netns::delete(&namespace);
    }
}

/// Removes the namespaces of labs whose process is gone (killed before it could clean up).
fn sweep_abandoned() {
    let mut abandoned = std::collections::HashSet::new();
    for namespace in netns::existing() {
        let Some(rest) = namespace.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            abandoned.insert(format!("{PREFIX}{pid}-"));
        }
    }
    for prefix in abandoned {
        remove_namespaces(&prefix);
    }
}

/// Removes this process's lab, for a signal handler of a program that runs one: what a drop
/// would do, when the program is about to exit without unwinding.
pub fn remove_this_process_lab() {
    remove_namespaces(&format!("{PREFIX}{}-", std::process::id()));
}
