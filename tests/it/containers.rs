//! Running the CDN as containers: compose.yaml agrees with the shipped topology, and every
//! node runs as its own process from one topology file, as each container runs it (certs made
//! once by `outpost certs init`, health by `outpost health`, a standalone edge in front of an
//! HTTPS upstream).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

use crate::common::{Outpost, client, outpost_command as outpost};

const CONFIG_IN_CONTAINER: &str = "/etc/outpost/outpost.toml";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_runs_every_node_of_the_shipped_topology() {
    let compose = &YamlLoader::load_from_str(&repo_file("compose.yaml")).unwrap()[0];
    let topology = outpost_node::Topology::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/outpost.toml"),
    )
    .unwrap();
    let services = compose["services"].as_hash().expect("a services map");
    let names: Vec<&str> = services.keys().filter_map(Yaml::as_str).collect();
    let config = ["--config", CONFIG_IN_CONTAINER];
    let mut expected: Vec<(String, Vec<String>, &str)> = Vec::new();
    let node = |role: &str, name: &str, named: bool| {
        let mut command = vec![role.to_owned()];
        command.extend(config.iter().map(|s| (*s).to_owned()));
        if named {
            command.extend(["--name".to_owned(), name.to_owned()]);
        }
        (name.to_owned(), command)
    };
    let (name, command) = node("origin", &topology.origin.name, false);
    expected.push((name, command, "certs"));
    for parent in &topology.parents {
        let (name, command) = node("parent", &parent.name, true);
        expected.push((name, command, "origin"));
    }
    for edge in &topology.edges {
        let (name, command) = node("edge", &edge.name, true);
        expected.push((name, command, "parent-eu"));
    }
    assert!(topology.dns.is_some() && topology.anycast.is_some());
    expected.push(("dns".into(), node("dns", "dns", false).1, "certs"));
    let control = topology.control.as_ref().expect("a control node");
    expected.push((
        control.name.clone(),
        node("control", &control.name, false).1,
        "certs",
    ));
    expected.push((
        "anycast".into(),
        node("anycast", "anycast", false).1,
        "edge-ams",
    ));
    for (name, command, after) in &expected {
        let service = &compose["services"][name.as_str()];
        assert!(
            !service.is_badvalue(),
            "compose.yaml has no service {name}: {names:?}"
        );
        assert_eq!(&strings(&service["command"]), command, "{name}: command");
        let health = strings(&service["healthcheck"]["test"]);
        assert_eq!(
            health,
            [
                "CMD",
                "/usr/local/bin/outpost",
                "health",
                "--config",
                CONFIG_IN_CONTAINER,
                name
            ],
            "{name}: health check"
        );
        assert!(
            !service["depends_on"][*after].is_badvalue(),
            "{name} must start after {after}"
        );
        assert_eq!(service["network_mode"].as_str(), Some("host"), "{name}");
    }
    // Every node waits for the certificates, and waits only for services that exist.
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let volumes = strings(&service["volumes"]);
        assert!(
            volumes.contains(&format!("./config/outpost.toml:{CONFIG_IN_CONTAINER}:ro")),
            "{name}: the shared topology, read-only: {volumes:?}"
        );
        assert!(
            volumes.contains(&"state:/var/lib/outpost".to_owned()),
            "{name}"
        );
        if let Some(deps) = service["depends_on"].as_hash() {
            for (dep, condition) in deps {
                let dep = dep.as_str().unwrap();
                assert!(names.contains(&dep), "{name} depends on unknown {dep}");
                let wanted = if dep == "certs" {
                    "service_completed_successfully"
                } else {
                    "service_healthy"
                };
                assert_eq!(
                    condition["condition"].as_str(),
                    Some(wanted),
                    "{name} -> {dep}"
                );
            }
        } else {
            assert_eq!(name, "certs", "only the certificates start first");
        }
    }
    assert_eq!(services.len(), expected.len() + 1, "{names:?}");
    let dockerfile = repo_file("Dockerfile");
    assert!(dockerfile.contains("FROM scratch"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/outpost"]"#));
    assert!(dockerfile.contains("USER 10001:10001"));
}

/// A free TCP port on 127.0.0.1 (and, as far as anyone can tell, its UDP twin).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_runs_as_its_own_process_from_one_topology() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut ports = std::iter::repeat_with(free_port);
    let mut next = || format!("127.0.0.1:{}", ports.next().unwrap());
    let (origin, origin_admin) = (next(), next());
    let (parent, parent_admin) = (next(), next());
    let (edge, edge_https, edge_admin) = (next(), next(), next());
    let (dns, dns_admin) = (next(), next());
    let control = next();
    let anycast_port = free_port();
    let toml = format!(
        r#"[admin]
token = "t"
tls = true
[tls]
state_dir = "{state}"
[origin]
listen = "{origin}"
admin = "{origin_admin}"
shielded = true
[[parents]]
name = "parent-eu"
listen = "{parent}"
admin = "{parent_admin}"
location = [50.1, 8.7]
[[edges]]
name = "edge-ams"
listen = "{edge}"
https = "{edge_https}"
admin = "{edge_admin}"
location = [52.4, 4.9]
[dns]
listen = "{dns}"
admin = "{dns_admin}"
[anycast]
address = "127.0.0.1"
http_port = {anycast_port}
[control]
listen = "{control}"
"#,
        state = state.display()
    );
    let config = dir.path().join("outpost.toml");
    std::fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap();

    // Made once; a second run keeps every file.
    let (ok, made) = outpost(&["certs", "init", "--config", config]);
    assert!(ok, "{made}");
    for file in [
        "ca.pem",
        "edge.pem",
        "admin.pem",
        "origin.pem",
        "client-edge-ams.pem",
    ] {
        assert!(made.contains(file), "{file} not made: {made}");
    }
    let ca = std::fs::read(state.join("ca.pem")).unwrap();
    let edge_cert = std::fs::read(state.join("edge.pem")).unwrap();
    assert!(outpost(&["certs", "init", "--config", config]).0);
    assert_eq!(std::fs::read(state.join("ca.pem")).unwrap(), ca);
    assert_eq!(std::fs::read(state.join("edge.pem")).unwrap(), edge_cert);

    let health = |node: &str| outpost(&["health", "--config", config, node]);
    assert!(!health("edge-ams").0, "nothing runs yet");
    let _origin = Outpost::spawn(&["origin", "--config", config], 1);
    let _parent = Outpost::spawn(&["parent", "--config", config, "--name", "parent-eu"], 1);
    let mut edge_node = Outpost::spawn(&["edge", "--config", config, "--name", "edge-ams"], 1);
    let _dns = Outpost::spawn(&["dns", "--config", config], 1);
    let _anycast = Outpost::spawn(&["anycast", "--config", config], 1);
    let _control = Outpost::spawn(&["control", "--config", config], 1);
    for node in [
        "origin",
        "parent-eu",
        "edge-ams",
        "dns",
        "anycast",
        "control",
    ] {
        let (ok, said) = health(node);
        assert!(ok, "{node}: {said}");
    }
    assert!(!health("edge-nowhere").0);

    // Edge, parent and the shielded origin, each its own process.
    let http = client();
    let response = http.get(format!("http://{edge}/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let via = response.headers()["via"].to_str().unwrap().to_owned();
    assert_eq!(via, "1.1 parent-eu, 1.1 edge-ams");
    // Through the control node, over the admin listeners' TLS, to both nodes.
    let (ok, purged) = outpost(&["purge", "--config", config, "/"]);
    assert!(ok && purged.contains("edge-ams: purged 1 in"), "{purged}");
    // The parent's own copy may still be on its way into its cache when the edge has the
    // response (a fill stores when its body ends); a purge that wins that race leaves nothing
    // stored, so the parent purged 0 or 1, and either way it answered.
    assert!(purged.contains("parent-eu: purged "), "{purged}");
    assert!(purged.contains("purge 1 acknowledged"), "{purged}");

    // A standalone edge in front of an HTTPS upstream (here the edge's HTTPS listener),
    // verified against the CA it is given; without it, the public roots refuse that CA.
    let ca_path = state.join("ca.pem");
    let (front, front_admin) = (next(), next());
    let upstream = format!("https://{edge_https}");
    let args = [
        "edge",
        "--listen",
        &front,
        "--admin",
        &front_admin,
        "--upstream",
        &upstream,
        "--name",
        "front",
    ];
    let mut with_ca = args.to_vec();
    let ca_arg = ca_path.to_str().unwrap();
    with_ca.extend(["--upstream-ca", ca_arg]);
    let front_node = Outpost::spawn(&with_ca, 1);
    let response = http.get(format!("http://{front}/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["via"].to_str().unwrap(),
        "1.1 parent-eu, 1.1 edge-ams, 1.1 front"
    );
    drop(front_node);
    let (untrusted, untrusted_admin) = (next(), next());
    let args = [
        "edge",
        "--listen",
        &untrusted,
        "--admin",
        &untrusted_admin,
        "--upstream",
        &upstream,
    ];
    let _public_roots = Outpost::spawn(&args, 1);
    let response = http
        .get(format!("http://{untrusted}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502, "an unknown CA is not trusted");

    // A stopped edge fails its health check (and a container engine restarts it).
    assert!(edge_node.terminate());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!health("edge-ams").0);
}

/// The objects of a Kubernetes manifest, by kind and name.
fn object<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("deploy/kubernetes/outpost.yaml has no {kind} {name}"))
}

#[test]
fn kubernetes_manifests_agree_with_the_shipped_topology() {
    let docs = YamlLoader::load_from_str(&repo_file("deploy/kubernetes/outpost.yaml")).unwrap();
    for doc in &docs {
        for key in ["apiVersion", "kind"] {
            assert!(
                doc[key].as_str().is_some(),
                "an object without {key}: {doc:?}"
            );
        }
        assert!(doc["metadata"]["name"].as_str().is_some(), "{doc:?}");
    }
    let shipped = outpost_node::Topology::default_topology();
    let toml = object(&docs, "ConfigMap", "outpost-topology")["data"]["outpost.toml"]
        .as_str()
        .expect("the topology in the ConfigMap");
    let cluster = outpost_node::Topology::parse(toml, "the ConfigMap").unwrap();
    assert_eq!(cluster.origin.name, shipped.origin.name);
    assert_eq!(cluster.origin.shielded, shipped.origin.shielded);
    assert_eq!(cluster.admin.tls, shipped.admin.tls);
    let port = |addr: Option<std::net::SocketAddr>| addr.map(|a| a.port());
    let mut nodes = vec![(
        "origin",
        &cluster.origin.name,
        cluster.origin.address,
        vec![
            ("http", port(cluster.origin.listen)),
            ("admin", port(cluster.origin.admin)),
        ],
    )];
    assert_eq!(port(cluster.origin.listen), port(shipped.origin.listen));
    assert_eq!(cluster.parents.len(), shipped.parents.len());
    for (parent, ours) in cluster.parents.iter().zip(&shipped.parents) {
        assert_eq!((&parent.name, parent.location), (&ours.name, ours.location));
        assert_eq!(parent.listen.port(), ours.listen.port());
        assert_eq!(parent.admin.port(), ours.admin.port());
        let ports = vec![
            ("http", Some(parent.listen.port())),
            ("admin", Some(parent.admin.port())),
        ];
        nodes.push(("parent", &parent.name, parent.address, ports));
    }
    assert_eq!(cluster.edges.len(), shipped.edges.len());
    for (edge, ours) in cluster.edges.iter().zip(&shipped.edges) {
        assert_eq!((&edge.name, edge.location), (&ours.name, ours.location));
        assert_eq!(port(edge.https), port(ours.https));
        assert_eq!(edge.listen.port(), ours.listen.port());
        let ports = vec![
            ("http", Some(edge.listen.port())),
            ("https", port(edge.https)),
            ("admin", Some(edge.admin.port())),
        ];
        nodes.push(("edge", &edge.name, edge.address, ports));
    }
    let control = cluster.control.as_ref().expect("a control node");
    let ours = shipped.control.as_ref().expect("a control node");
    assert_eq!(control.name, ours.name);
    assert_eq!(control.listen.port(), ours.listen.port());
    nodes.push((
        "control",
        &control.name,
        control.address,
        vec![("admin", Some(control.listen.port()))],
    ));
    for (role, name, address, ports) in nodes {
        let kind = if role == "parent" {
            "StatefulSet"
        } else {
            "Deployment"
        };
        let workload = object(&docs, kind, name);
        let pod = &workload["spec"]["template"];
        let container = &pod["spec"]["containers"][0];
        let mut args = vec![
            role.to_owned(),
            "--config".into(),
            CONFIG_IN_CONTAINER.into(),
        ];
        if role == "parent" || role == "edge" {
            args.extend(["--name".to_owned(), name.clone()]);
        }
        assert_eq!(strings(&container["args"]), args, "{name}: args");
        let labels = &pod["metadata"]["labels"];
        let selector = &workload["spec"]["selector"]["matchLabels"];
        for (key, value) in selector.as_hash().unwrap() {
            assert_eq!(&labels[key.as_str().unwrap()], value, "{name}: selector");
        }
        let probe = strings(&container["livenessProbe"]["exec"]["command"]);
        assert_eq!(probe.last(), Some(name), "{name}: liveness probe");
        let service = object(&docs, "Service", name);
        let address = address.expect("a node reached at its Service");
        assert_eq!(
            service["spec"]["clusterIP"].as_str(),
            Some(address.to_string().as_str()),
            "{name}: the topology's address is its Service's"
        );
        let container_ports = container["ports"].as_vec().unwrap();
        for (port_name, number) in ports {
            let number = number.unwrap() as i64;
            let exposed = service["spec"]["ports"]
                .as_vec()
                .unwrap()
                .iter()
                .find(|p| p["name"].as_str() == Some(port_name))
                .unwrap_or_else(|| panic!("{name}: no {port_name} port on the Service"));
            assert_eq!(exposed["port"].as_i64(), Some(number), "{name} {port_name}");
            assert!(
                container_ports
                    .iter()
                    .any(|p| p["name"].as_str() == Some(port_name)
                        && p["containerPort"].as_i64() == Some(number)),
                "{name}: container port {port_name} {number}"
            );
        }
        for volume in pod["spec"]["volumes"].as_vec().unwrap() {
            if let Some(map) = volume["configMap"]["name"].as_str() {
                object(&docs, "ConfigMap", map);
            }
            if let Some(secret) = volume["secret"]["secretName"].as_str() {
                object(&docs, "Secret", secret);
            }
        }
        for env in container["env"].as_vec().unwrap() {
            if let Some(secret) = env["valueFrom"]["secretKeyRef"]["name"].as_str() {
                let key = env["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
                assert!(
                    !object(&docs, "Secret", secret)["stringData"][key].is_badvalue(),
                    "{name}: secret {secret} has no {key}"
                );
            }
        }
    }
    let dns = cluster.dns.as_ref().expect("the DNS");
    let service = object(&docs, "Service", "dns");
    let protocols: Vec<&str> = service["spec"]["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|p| p["protocol"].as_str())
        .collect();
    assert_eq!(protocols, ["UDP", "TCP"]);
    let container =
        &object(&docs, "Deployment", "dns")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(i64::from(dns.listen.port())))
    );
}

/// Runs `program ARGS` in the repository; panics with its output when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test-all installs it as root)"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

const PROJECT: &str = "outpost-compose-test";

/// `docker-compose -p PROJECT ARGS` on compose.yaml.
fn compose(args: &[&str]) -> String {
    run(
        "docker-compose",
        &[&["-p", PROJECT, "-f", "compose.yaml"], args].concat(),
    )
}

/// Takes the containers and their volume down when the test ends, also when it fails.
struct ComposeDown;

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args([
                "-p",
                PROJECT,
                "-f",
                "compose.yaml",
                "down",
                "-v",
                "--remove-orphans",
                "-t",
                "5",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output();
    }
}

/// A dockerd started for the test (none was running), stopped at the end.
struct Engine(Option<std::process::Child>);

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            // SIGTERM, so that it stops its containerd too; SIGKILL if it takes too long.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn engine() -> Engine {
    let up = || {
        Command::new("docker")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if up() {
        return Engine(None);
    }
    let log = std::fs::File::create(std::env::temp_dir().join("outpost-test-dockerd.log")).unwrap();
    let child = Command::new("dockerd")
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting dockerd (scripts/test-all installs docker.io as root)");
    let engine = Engine(Some(child));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !up() {
        assert!(
            std::time::Instant::now() < deadline,
            "dockerd did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    engine
}

/// The image of Dockerfile's runtime stage, from the binary the tests built: it, the shared
/// libraries it links (the test binary is not static), the topology and the demo site.
fn build_image() {
    let context = tempfile::tempdir().unwrap();
    let rootfs = context.path().join("rootfs");
    let binary = env!("CARGO_BIN_EXE_outpost");
    let copy = |from: &Path, to: &str| {
        let to = rootfs.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    };
    copy(Path::new(binary), "/usr/local/bin/outpost");
    for line in run("ldd", &[binary]).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux... (0x...)`
        let path = line
            .split("=>")
            .last()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap_or("");
        if path.starts_with('/') {
            copy(&std::fs::canonicalize(path).unwrap(), path);
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy(
        &repo.join("config/outpost.toml"),
        "/etc/outpost/outpost.toml",
    );
    let demo = repo.join("origin/demo");
    for entry in walk(&demo) {
        let relative = entry.strip_prefix(&demo).unwrap().display().to_string();
        copy(&entry, &format!("/usr/share/outpost/demo/{relative}"));
    }
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::create_dir_all(context.path().join("state")).unwrap();
    let dockerfile = repo.join("deploy/docker/prebuilt.Dockerfile");
    run(
        "docker",
        &[
            "build",
            "-q",
            "-t",
            "outpost:latest",
            "-f",
            dockerfile.to_str().unwrap(),
            context.path().to_str().unwrap(),
        ],
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The edge the DNS container gives a client at `source`.
fn dns_answer(source: &str) -> String {
    let output = Command::new("dig")
        .args([
            "+short",
            "+time=1",
            "+tries=1",
            "-p",
            "1053",
            "@127.0.0.1",
            "-b",
            source,
        ])
        .arg("www.outpost.test")
        .output()
        .expect("dig (scripts/test-all installs bind9-dnsutils)");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Which edge the anycast container sends a client at `source` to.
async fn anycast_edge(source: [u8; 4]) -> String {
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(source))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    match client.get("http://127.0.0.10:8080/").send().await {
        Ok(response) => response.headers()["via"]
            .to_str()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned(),
        Err(error) => format!("no answer: {error}"),
    }
}

/// What the `hello` worker's route answers on the edge at `ip`.
async fn hello_answer(http: &reqwest::Client, ip: &str) -> String {
    let response = http
        .get(format!("http://{ip}:8080/hello"))
        .header("host", "www.outpost.test")
        .send()
        .await
        .unwrap();
    response.text().await.unwrap()
}

/// Waits until `check` holds, for at most `limit`; returns how long it took.
async fn until<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Duration {
    let started = std::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_runs_the_cdn_as_containers_and_moves_clients_off_a_stopped_edge() {
    if !outpost_lab::is_root() {
        eprintln!("skipped: running compose.yaml needs a container engine, which needs root");
        return;
    }
    let _heavy = crate::common::HEAVY.lock().await;
    let started = std::time::Instant::now();
    let _engine = engine();
    build_image();
    let _down = ComposeDown;
    compose(&["up", "-d", "--no-build"]);
    let http = client();
    let edges = [
        ("edge-ams", "127.0.0.11", [127, 0, 1, 1]),
        ("edge-nyc", "127.0.0.12", [127, 0, 2, 1]),
        ("edge-sin", "127.0.0.13", [127, 0, 3, 1]),
    ];
    for (edge, ip, _) in edges {
        let url = format!("http://{ip}:8080/_outpost/health");
        until(Duration::from_secs(90), edge, || async {
            http.get(&url).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }
    let ready = started.elapsed();

    // Each region's client gets its nearest edge, served through a parent from the origin.
    for (edge, ip, source) in edges {
        let client_ip = std::net::Ipv4Addr::from(source).to_string();
        until(Duration::from_secs(20), "DNS answers", || async {
            dns_answer(&client_ip) == ip
        })
        .await;
        assert_eq!(anycast_edge(source).await, edge);
        let response = http.get(format!("http://{ip}:8080/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let via = response.headers()["via"].to_str().unwrap();
        assert!(
            via.starts_with("1.1 parent-") && via.ends_with(edge),
            "{via}"
        );
    }

    // The CLI on the host reaches every container with the token and CA from the volume.
    let state = tempfile::tempdir().unwrap();
    let container = compose(&["ps", "-q", "edge-ams"]).trim().to_owned();
    for file in ["admin-token", "ca.pem"] {
        let from = format!("{container}:/var/lib/outpost/{file}");
        run(
            "docker",
            &["cp", &from, state.path().join(file).to_str().unwrap()],
        );
    }
    let token = std::fs::read_to_string(state.path().join("admin-token")).unwrap();
    let cacert = state.path().join("ca.pem");
    let admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--token",
            token.trim(),
            "--cacert",
            cacert.to_str().unwrap(),
        ]);
        outpost(&all)
    };
    // Through the control container, to all five caches.
    let (ok, purged) = admin(&["purge", "/"]);
    assert!(
        ok && purged.contains("acknowledged") && purged.contains("every node in"),
        "{purged}"
    );
    assert_eq!(purged.matches(": purged ").count(), 5, "{purged}");
    let hello = crate::workers::example("hello");
    let (ok, deployed) = admin(&[
        "workers",
        "deploy",
        &hello,
        "--name",
        "hello",
        "--route",
        "www.outpost.test/hello",
    ]);
    assert!(ok, "{deployed}");
    for (edge, ip, _) in edges {
        assert_eq!(
            hello_answer(&http, ip).await,
            format!("Hello from the edge {edge}!\n")
        );
    }

    // Stopping edge-ams moves Europe to the next nearest edge within interval x fall.
    // (the DNS checks every 2 s and acts on 3 failures, anycast every 0.5 s on 2).
    let stopping = std::time::Instant::now();
    compose(&["stop", "-t", "5", "edge-ams"]);
    until(
        Duration::from_secs(10),
        "Europe's DNS answer moves",
        || async { dns_answer("127.0.1.1") == "127.0.0.12" },
    )
    .await;
    let dns_moved = stopping.elapsed();
    until(
        Duration::from_secs(5),
        "Europe's anycast route moves",
        || async { anycast_edge([127, 0, 1, 1]).await == "edge-nyc" },
    )
    .await;
    let anycast_moved = stopping.elapsed();
    assert!(
        dns_moved < Duration::from_millis(2000 * 3 + 4000),
        "{dns_moved:?}"
    );
    eprintln!(
        "edge-ams stopped: Europe's DNS answer moved in {dns_moved:?}, its anycast route in {anycast_moved:?}"
    );
    compose(&["start", "edge-ams"]);
    let back = until(
        Duration::from_secs(40),
        "Europe returns to edge-ams",
        || async {
            dns_answer("127.0.1.1") == "127.0.0.11"
                && anycast_edge([127, 0, 1, 1]).await == "edge-ams"
        },
    )
    .await;
    // The worker was kept in the volume across the restart.
    assert_eq!(
        hello_answer(&http, "127.0.0.11").await,
        "Hello from the edge edge-ams!\n"
    );
    eprintln!(
        "compose: healthy after {ready:?}; edge-ams back in {back:?}; whole test {:?}",
        started.elapsed()
    );

    drop(_down);
    let left = run(
        "docker",
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
        ],
    );
    assert!(left.trim().is_empty(), "containers left: {left}");
    let volumes = run(
        "docker",
        &[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
        ],
    );
    assert!(volumes.trim().is_empty(), "volumes left: {volumes}");
}
