//! The failures the lab shows, each driven from the client hosts and returning what it
//! measured. They expect the lab as [`Lab::start`] leaves it and leave it so again; each uses
//! its own objects, so they can run one after another on one lab.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::client::{self, Reply};
use crate::plan::{self, HostRole};
use crate::relay::Impairment;
use crate::{Lab, LabError};

/// The service name clients ask the DNS for, and the Host they send.
pub const SERVICE: &str = "www.outpost.test";

/// The node that answered last on a response's way (its last Cache-Status entry).
pub fn served_by(reply: &Reply) -> Option<String> {
    let entries: Vec<&str> = reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-status"))
        .flat_map(|(_, v)| v.split(','))
        .collect();
    let last = entries.last()?;
    Some(last.split(';').next()?.trim().to_owned())
}

/// Which parent a response passed (its Cache-Status names one), if any.
pub fn parent_of(reply: &Reply) -> Option<String> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-status"))
        .flat_map(|(_, v)| v.split(','))
        .map(|entry| entry.split(';').next().unwrap_or("").trim().to_owned())
        .find(|name| name.starts_with("parent-"))
}

fn addr(name: &str) -> Result<SocketAddr, LabError> {
    plan::data_addr(name).ok_or_else(|| LabError::UnknownHost(name.to_owned()))
}

fn anycast() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(plan::ANYCAST), plan::HTTP_PORT)
}

const POLL: Duration = Duration::from_millis(25);
const TIMEOUT: Duration = Duration::from_secs(2);

/// Polls on host `client` until `check` holds, for at most `within`; the instant it first
/// held, or `None`.
fn watch<F, Fut>(
    lab: &Lab,
    client: &str,
    within: Duration,
    check: F,
) -> Result<crate::netns::InNamespace<Option<Instant>>, LabError>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool>,
{
    lab.spawn_on(client, move || async move {
        let started = Instant::now();
        while started.elapsed() < within {
            if check().await {
                return Some(Instant::now());
            }
            tokio::time::sleep(POLL).await;
        }
        None
    })
}

/// Which edge the DNS answers `client` with now.
async fn dns_answer(dns: SocketAddr) -> Option<IpAddr> {
    client::resolve(dns, &format!("{SERVICE}."), TIMEOUT)
        .await
        .ok()?
        .first()
        .copied()
}

/// Which edge the anycast address reaches from here now.
async fn anycast_edge() -> Option<String> {
    let reply = client::get(anycast(), SERVICE, "/lab/obj-0.txt", TIMEOUT)
        .await
        .ok()?;
    (reply.status == 200).then(|| served_by(&reply))?
}

/// Killing an edge, and starting it again: how long its region's clients took to move.
#[derive(Debug, Clone)]
pub struct EdgeFailover {
    pub edge: String,
    /// What the health checks allow: interval x fall.
    pub horizon: Duration,
    /// From the kill to the DNS answering another edge, and that edge.
    pub dns_moved: Duration,
    pub dns_moved_to: IpAddr,
    /// From the kill to the anycast address reaching another edge, and that edge.
    pub anycast_moved: Duration,
    pub anycast_moved_to: String,
    /// From the restart to the DNS and the anycast address sending the region back.
    pub dns_back: Duration,
    pub anycast_back: Duration,
}

/// Kills `edge` (the nearest to `client`) and starts it again.
pub fn edge_failover(
    lab: &Lab,
    edge: &'static str,
    client: &str,
) -> Result<EdgeFailover, LabError> {
    let dns = addr("dns")?;
    let edge_ip = IpAddr::V4(lab.host(edge)?.address);
    let first = lab.on(client, move || async move {
        (dns_answer(dns).await, anycast_edge().await)
    })?;
    if first != (Some(edge_ip), Some(edge.to_owned())) {
        return Err(LabError::Scenario(format!(
            "{client} is not sent to {edge} before the failure: DNS and anycast give {first:?}"
        )));
    }
    let within = Duration::from_secs(15);
    let dns_watch = watch(lab, client, within, move || async move {
        dns_answer(dns).await.is_some_and(|ip| ip != edge_ip)
    })?;
    let anycast_watch = watch(lab, client, within, move || async move {
        anycast_edge().await.is_some_and(|name| name != edge)
    })?;
    let killed = Instant::now();
    lab.kill(edge)?;
    let moved = |watched: crate::netns::InNamespace<Option<Instant>>, what: &str| {
        watched
            .join()?
            .map(|at| at.saturating_duration_since(killed))
            .ok_or_else(|| {
                LabError::Scenario(format!("{what} did not move off {edge} in {within:?}"))
            })
    };
    let dns_moved = moved(dns_watch, "the DNS answer")?;
    let anycast_moved = moved(anycast_watch, "the anycast route")?;
    let (dns_moved_to, anycast_moved_to) = lab.on(client, move || async move {
        (dns_answer(dns).await, anycast_edge().await)
    })?;

    let dns_watch = watch(lab, client, within, move || async move {
        dns_answer(dns).await == Some(edge_ip)
    })?;
    let anycast_watch = watch(lab, client, within, move || async move {
        anycast_edge().await.as_deref() == Some(edge)
    })?;
    let restarted = Instant::now();
    lab.start_node(edge)?;
    let back = |watched: crate::netns::InNamespace<Option<Instant>>, what: &str| {
        watched
            .join()?
            .map(|at| at.saturating_duration_since(restarted))
            .ok_or_else(|| {
                LabError::Scenario(format!("{what} did not come back to {edge} in {within:?}"))
            })
    };
    let dns_back = back(dns_watch, "the DNS answer")?;
    let anycast_back = back(anycast_watch, "the anycast route")?;
    Ok(EdgeFailover {
        edge: edge.to_owned(),
        horizon: Duration::from_millis(plan::HEALTH_INTERVAL_MS * u64::from(plan::HEALTH_FALL)),
        dns_moved,
        dns_moved_to: dns_moved_to
            .ok_or_else(|| LabError::Scenario("no DNS answer after the move".into()))?,
        anycast_moved,
        anycast_moved_to: anycast_moved_to
            .ok_or_else(|| LabError::Scenario("no anycast answer after the move".into()))?,
        dns_back,
        anycast_back,
    })
}

/// Fetches `paths` from `edge` on host `client`, one after another: each reply (or error).
fn fetch_all(
    lab: &Lab,
    client: &str,
    edge: &str,
    paths: Vec<String>,
) -> Result<Vec<Result<Reply, String>>, LabError> {
    let edge = addr(edge)?;
    lab.on(client, move || async move {
        let mut replies = Vec::new();
        for path in paths {
            replies.push(client::get(edge, SERVICE, &path, Duration::from_secs(5)).await);
        }
        replies
    })
}

/// The Prometheus text of a node's admin listener, read from the operator's host.
pub fn metrics(lab: &Lab, node: &str) -> Result<String, LabError> {
    let admin = plan::admin_addr(node).ok_or_else(|| LabError::UnknownHost(node.to_owned()))?;
    lab.on("operator", move || async move {
        client::get(admin, "admin", "/metrics", TIMEOUT)
            .await
            .map(|r| r.text())
    })?
    .map_err(LabError::Scenario)
}

fn origin_requests(lab: &Lab) -> Result<f64, LabError> {
    Ok(client::metric(
        &metrics(lab, "origin")?,
        "outpost_origin_requests_total",
    ))
}

/// Killing a parent: where its objects went and what the origin saw.
#[derive(Debug, Clone)]
pub struct ParentFailover {
    pub parent: String,
    /// Objects fetched through one edge before, and how many of them the killed parent had.
    pub objects: usize,
    pub on_killed_parent: usize,
    /// Requests for them through two other edges after the kill that failed.
    pub failed: usize,
    /// What the origin was asked for them after the kill (once per object of the killed
    /// parent is the goal; once per edge would be twice that).
    pub origin_fetches: u64,
    /// After the parent is back: how long until the edges send it its share again.
    pub back_in: Duration,
}

/// Kills `parent` after objects were cached through `edge-ams`, fetches them through the two
/// other edges, and starts the parent again.
pub fn parent_failover(lab: &Lab, parent: &'static str) -> Result<ParentFailover, LabError> {
    let paths: Vec<String> = (10..50).map(|i| format!("/lab/obj-{i}.txt")).collect();
    let first = fetch_all(lab, "client-eu", "edge-ams", paths.clone())?;
    let mut on_killed_parent = 0;
    for reply in &first {
        let reply = reply.as_ref().map_err(|e| LabError::Scenario(e.clone()))?;
        if parent_of(reply).as_deref() == Some(parent) {
            on_killed_parent += 1;
        }
    }
    let before = origin_requests(lab)?;
    lab.kill(parent)?;
    let mut failed = 0;
    for (client, edge) in [("client-na", "edge-nyc"), ("client-asia", "edge-sin")] {
        for reply in fetch_all(lab, client, edge, paths.clone())? {
            if !reply.is_ok_and(|r| r.status == 200) {
                failed += 1;
            }
        }
    }
    let origin_fetches = (origin_requests(lab)? - before).round() as u64;
    let restarted = Instant::now();
    lab.start_node(parent)?;
    lab.wait_up(parent, Duration::from_secs(15))?;
    // New objects hash to it again once the edges see it healthy (rise probes).
    let mut back_in = None;
    let mut next = 150;
    while restarted.elapsed() < Duration::from_secs(15) {
        let path = format!("/lab/obj-{next}.txt");
        next += 1;
        if next >= crate::OBJECTS {
            break;
        }
        let reply = fetch_all(lab, "client-eu", "edge-ams", vec![path])?.pop();
        if reply
            .and_then(Result::ok)
            .as_ref()
            .and_then(parent_of)
            .as_deref()
            == Some(parent)
        {
            back_in = Some(restarted.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(ParentFailover {
        parent: parent.to_owned(),
        objects: paths.len(),
        on_killed_parent,
        failed,
        origin_fetches,
        back_in: back_in.ok_or_else(|| {
            LabError::Scenario(format!("{parent} got no objects back after its restart"))
        })?,
    })
}

/// Killing the origin: what clients got while it was gone.
#[derive(Debug, Clone)]
pub struct OriginFailure {
    /// Stale cached objects requested, and how many were served (stale-if-error).
    pub cached: usize,
    pub cached_served: usize,
    /// Objects never cached, and the statuses they got.
    pub uncached_statuses: Vec<u16>,
    /// After the origin is back: an object never fetched before is served.
    pub served_after_restart: bool,
}

pub fn origin_failure(lab: &Lab) -> Result<OriginFailure, LabError> {
    let cached: Vec<String> = (0..10)
        .map(|i| format!("{}obj-{i}.txt", plan::SHORT_PATH))
        .collect();
    for reply in fetch_all(lab, "client-eu", "edge-ams", cached.clone())? {
        reply.map_err(LabError::Scenario)?;
    }
    // Past their max-age: every tier must revalidate, and the origin is gone.
    std::thread::sleep(Duration::from_secs(plan::SHORT_MAX_AGE + 1));
    lab.kill("origin")?;
    let cached_served = fetch_all(lab, "client-eu", "edge-ams", cached.clone())?
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status == 200))
        .count();
    let uncached: Vec<String> = (100..105)
        .map(|i| format!("{}obj-{i}.txt", plan::SHORT_PATH))
        .collect();
    let uncached_statuses = fetch_all(lab, "client-eu", "edge-ams", uncached)?
        .into_iter()
        .map(|r| r.map_or(0, |r| r.status))
        .collect();
    lab.start_node("origin")?;
    lab.wait_up("origin", Duration::from_secs(15))?;
    let after = fetch_all(
        lab,
        "client-eu",
        "edge-ams",
        vec![format!("{}obj-150.txt", plan::SHORT_PATH)],
    )?;
    Ok(OriginFailure {
        cached: cached.len(),
        cached_served,
        uncached_statuses,
        served_after_restart: after
            .first()
            .is_some_and(|r| r.as_ref().is_ok_and(|r| r.status == 200)),
    })
}

/// A bad link between one edge and one parent, and how the edge routed around it.
#[derive(Debug, Clone)]
pub struct BadLink {
    pub edge: String,
    pub parent: String,
    pub impairment: Impairment,
    /// Median time of a miss through the edge before, while the link was bad (after the
    /// shift), and after it healed.
    pub miss_before: Duration,
    pub miss_during: Duration,
    pub miss_after: Duration,
    /// From the link going bad to the last miss sent over it.
    pub shifted_in: Duration,
    /// Misses while the link was bad that failed.
    pub failed_during: usize,
    /// From the link healing to the first miss the parent got again.
    pub returned_in: Duration,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// One timed miss: when it started, how long it took, which parent it went through.
type Miss = (Instant, Duration, Option<String>, bool);

fn timed_misses(
    lab: &Lab,
    client: &str,
    edge: &str,
    paths: Vec<String>,
    gap: Duration,
) -> Result<Vec<Miss>, LabError> {
    let edge = addr(edge)?;
    lab.on(client, move || async move {
        let mut misses = Vec::new();
        for path in paths {
            let started = Instant::now();
            let reply = client::get(edge, SERVICE, &path, Duration::from_secs(10)).await;
            let took = started.elapsed();
            let ok = reply.as_ref().is_ok_and(|r| r.status == 200);
            misses.push((started, took, reply.ok().as_ref().and_then(parent_of), ok));
            tokio::time::sleep(gap).await;
        }
        misses
    })
}

/// Adds `impairment` to the link from `edge` to `parent`, watches the edge's misses shift to
/// the other parent, heals the link and watches them come back.
pub fn bad_link(
    lab: &Lab,
    edge: &'static str,
    client: &str,
    parent: &'static str,
    impairment: Impairment,
) -> Result<BadLink, LabError> {
    let objects = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("/lab/obj-{i}.txt")).collect()
    };
    let gap = Duration::from_millis(50);
    let before = timed_misses(lab, client, edge, objects(50..70), gap)?;
    if !before.iter().any(|m| m.2.as_deref() == Some(parent)) {
        return Err(LabError::Scenario(format!(
            "{edge} sent none of 20 misses to {parent} before its link went bad"
        )));
    }
    let impaired = Instant::now();
    lab.impair(edge, parent, impairment)?;
    let during = timed_misses(lab, client, edge, objects(70..120), gap)?;
    let failed_during = during.iter().filter(|m| !m.3).count();
    let last_over_link = during
        .iter()
        .filter(|m| m.2.as_deref() == Some(parent))
        .map(|m| m.0 + m.1)
        .max();
    let shifted_in =
        last_over_link.map_or(Duration::ZERO, |at| at.saturating_duration_since(impaired));
    let shifted: Vec<Duration> = during
        .iter()
        .filter(|m| last_over_link.is_none_or(|at| m.0 > at) && m.3)
        .map(|m| m.1)
        .collect();
    if shifted.len() < 10 {
        return Err(LabError::Scenario(format!(
            "{edge} kept sending misses to {parent} over the bad link: only {} of {} misses after the last one",
            shifted.len(),
            during.len()
        )));
    }
    let healed = Instant::now();
    lab.impair(edge, parent, Impairment::default())?;
    let mut after = Vec::new();
    let mut returned_in = None;
    for chunk in [120..140, 200..230, 230..260, 260..300] {
        let misses = timed_misses(lab, client, edge, objects(chunk), gap)?;
        if let Some(first) = misses.iter().find(|m| m.2.as_deref() == Some(parent)) {
            returned_in = Some(first.0.saturating_duration_since(healed));
            after = misses
                .iter()
                .filter(|m| m.0 >= first.0)
                .map(|m| m.1)
                .collect();
            break;
        }
    }
    Ok(BadLink {
        edge: edge.to_owned(),
        parent: parent.to_owned(),
        impairment,
        miss_before: median(before.iter().map(|m| m.1).collect()),
        miss_during: median(shifted),
        miss_after: median(after),
        shifted_in,
        failed_during,
        returned_in: returned_in.ok_or_else(|| {
            LabError::Scenario(format!(
                "{parent} got no misses of {edge} back after the link healed"
            ))
        })?,
    })
}

/// Bad links from one edge to every parent, and how the edge went straight to the origin.
#[derive(Debug, Clone)]
pub struct DirectToOrigin {
    pub edge: String,
    pub impairment: Impairment,
    /// Median miss before, once the edge went straight to the origin, and after the links
    /// healed and it went through its parents again.
    pub miss_before: Duration,
    pub miss_direct: Duration,
    pub miss_after: Duration,
    /// From the links going bad to the first miss that went straight to the origin.
    pub direct_in: Duration,
    /// From the links healing to the first miss through a parent again.
    pub parents_again_in: Duration,
    pub failed: usize,
}

/// Adds `impairment` to the links from `edge` to both parents: with the overlay's
/// `direct_origin`, its misses go straight to the origin until the links heal.
pub fn direct_to_origin(
    lab: &Lab,
    edge: &'static str,
    client: &str,
    impairment: Impairment,
) -> Result<DirectToOrigin, LabError> {
    let objects = |range: std::ops::Range<usize>| -> Vec<String> {
        range
            .map(|i| format!("{}obj-{i}.txt", plan::SHORT_PATH))
            .collect()
    };
    let gap = Duration::from_millis(50);
    let parents = ["parent-eu", "parent-us"];
    let before = timed_misses(lab, client, edge, objects(200..210), gap)?;
    if before.iter().any(|m| m.2.is_none()) {
        return Err(LabError::Scenario(format!(
            "{edge} went to the origin with every path good: {before:?}"
        )));
    }
    let impaired = Instant::now();
    for parent in parents {
        lab.impair(edge, parent, impairment)?;
    }
    let during = timed_misses(lab, client, edge, objects(210..250), gap)?;
    let first_direct = during.iter().position(|m| m.3 && m.2.is_none());
    let direct: Vec<Duration> = first_direct
        .map(|i| {
            during[i..]
                .iter()
                .filter(|m| m.2.is_none())
                .map(|m| m.1)
                .collect()
        })
        .unwrap_or_default();
    let failed = during.iter().filter(|m| !m.3).count();
    let direct_in = first_direct
        .map(|i| during[i].0.saturating_duration_since(impaired))
        .ok_or_else(|| {
            LabError::Scenario(format!(
                "{edge} never went straight to the origin: {during:?}"
            ))
        })?;
    let healed = Instant::now();
    for parent in parents {
        lab.impair(edge, parent, Impairment::default())?;
    }
    let mut parents_again_in = None;
    let mut after = Vec::new();
    for chunk in [250..270, 270..285, 285..300] {
        let misses = timed_misses(lab, client, edge, objects(chunk), gap)?;
        if let Some(first) = misses.iter().position(|m| m.2.is_some()) {
            parents_again_in = Some(misses[first].0.saturating_duration_since(healed));
            after = misses[first..].iter().map(|m| m.1).collect();
            break;
        }
    }
    Ok(DirectToOrigin {
        edge: edge.to_owned(),
        impairment,
        miss_before: median(before.iter().map(|m| m.1).collect()),
        miss_direct: median(direct),
        miss_after: median(after),
        direct_in,
        parents_again_in: parents_again_in.ok_or_else(|| {
            LabError::Scenario(format!("{edge} did not go through a parent again"))
        })?,
        failed,
    })
}

/// Every node of the lab that serves a cache.
pub fn cache_nodes() -> impl Iterator<Item = &'static str> {
    plan::HOSTS
        .iter()
        .filter(|h| matches!(h.role, HostRole::Parent | HostRole::Edge))
        .map(|h| h.name)
}

/// Sends a purge of `urls` to the control node from the operator's host; its report.
pub fn purge(lab: &Lab, urls: Vec<String>) -> Result<serde_json::Value, LabError> {
    let control = addr("control")?;
    let body = serde_json::json!({ "urls": urls }).to_string();
    let reply = lab
        .on("operator", move || async move {
            let authorization = format!("Bearer {}", plan::TOKEN);
            client::request(
                control,
                "POST",
                "control",
                "/fleet/purge",
                &[
                    ("authorization", &authorization),
                    ("content-type", "application/json"),
                ],
                body.as_bytes(),
                Duration::from_secs(10),
            )
            .await
        })?
        .map_err(LabError::Scenario)?;
    if reply.status != 200 {
        return Err(LabError::Scenario(format!(
            "the control node refused a purge: {} {}",
            reply.status,
            reply.text()
        )));
    }
    serde_json::from_slice(&reply.body)
        .map_err(|e| LabError::Scenario(format!("the control node's report: {e}")))
}

/// How fast purges reach every node.
#[derive(Debug, Clone)]
pub struct PurgeReach {
    pub purges: usize,
    pub nodes: usize,
    /// From the purge's arrival at the control node to the last node applying it.
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Sends `rounds` purges one after another with every node up.
pub fn purge_reach(lab: &Lab, rounds: usize) -> Result<PurgeReach, LabError> {
    let mut times = Vec::new();
    let mut nodes = 0;
    for round in 0..rounds {
        let report = purge(
            lab,
            vec![format!("/lab/obj-{}.txt", round % crate::OBJECTS)],
        )?;
        nodes = report["nodes"].as_array().map_or(0, Vec::len);
        let last = report["last_node_ms"].as_f64().ok_or_else(|| {
            LabError::Scenario(format!(
                "a node missed a purge with every node up: {report}"
            ))
        })?;
        times.push(Duration::from_secs_f64(last / 1e3));
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Ok(PurgeReach {
        purges: rounds,
        nodes,
        p50: at(0.5),
        p99: at(0.99),
        max: times.last().copied().unwrap_or_default(),
    })
}

/// How an edge is cut off during a purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Its link is down: nobody reaches it, it reaches nobody.
    Link,
    /// Only the path to the control node is cut: its clients and parents still reach it, so
    /// it keeps serving while it cannot hear of the purge.
    FromControl,
}

/// A purge while one edge is cut off, under load on every edge.
#[derive(Debug, Clone)]
pub struct PurgeCutOff {
    pub cut_edge: String,
    pub cut: Cut,
    /// What the control node reported for the cut edge, and when it acknowledged the purge.
    pub cut_edge_outcome: String,
    pub acknowledged: Duration,
    /// From the cut to the acknowledgement: the cut edge's lease must have run out by then.
    pub cut_to_ack: Duration,
    /// Requests sent over all edges, answered 200, and started after the acknowledgement.
    pub requests: usize,
    pub answered: usize,
    pub after_ack: usize,
    /// Of those after the acknowledgement, how many carried the purged version.
    pub stale_after_ack: usize,
    /// Answers the cut edge gave after it was reconnected (after the acknowledgement, when
    /// cut from the control node only), and how many were stale.
    pub cut_edge_after: usize,
    pub cut_edge_stale: usize,
    /// Answers of the cut edge started after the purge was sent that were stale (allowed
    /// until the acknowledgement), and the start of the last one, from the purge: cut from the
    /// control node only, the edge learns from its parents that it missed the purge and
    /// revalidates before its lease would run out.
    pub cut_edge_stale_after_purge: usize,
    pub cut_edge_last_stale: Option<Duration>,
}

/// The version the purged objects get next at the origin (each run of
/// [`purge_with_edge_cut_off`] changes them once).
fn next_version(lab: &Lab) -> Result<u32, LabError> {
    let text =
        std::fs::read_to_string(lab.site().join("lab/purge/obj-0.txt")).map_err(|source| {
            LabError::Tool {
                tool: "origin content",
                source,
            }
        })?;
    let current = text
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| LabError::Scenario(format!("unexpected origin content: {text}")))?;
    Ok(current + 1)
}

/// One answer under load: when its request started, whether it came from the cut edge, and
/// its status and version.
type Answer = (Instant, bool, u16, bool);

/// How long [`purge_with_edge_cut_off`] keeps its load going once the cut edge is back.
pub const LOAD_AFTER_RECONNECT: Duration = Duration::from_millis(1_500);

/// Keeps every edge under load while `cut` is cut off, the purged objects change at the
/// origin and are purged, and `cut` is reconnected; the load goes on for
/// [`LOAD_AFTER_RECONNECT`]. The load runs for a time, not a number of requests, so a fast
/// machine does not finish it before the purge is acknowledged.
pub fn purge_with_edge_cut_off(
    lab: &Lab,
    cut: &'static str,
    how: Cut,
) -> Result<PurgeCutOff, LabError> {
    let version = next_version(lab)?;
    let old = format!("version {}", version - 1);
    let paths: Vec<String> = (0..crate::PURGED_OBJECTS)
        .map(|i| format!("/lab/purge/obj-{i}.txt"))
        .collect();
    let clients = [
        ("client-eu", "edge-ams"),
        ("client-na", "edge-nyc"),
        ("client-asia", "edge-sin"),
    ];
    // Warm every edge (and both parents) with the current version.
    for (client, edge) in clients {
        for reply in fetch_all(lab, client, edge, paths.clone())? {
            let reply = reply.map_err(LabError::Scenario)?;
            if !reply.text().contains(&old) {
                return Err(LabError::Scenario(format!(
                    "{edge} did not serve {old}: {}",
                    reply.text()
                )));
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (client, edge) in clients {
        let target = addr(edge)?;
        let paths = paths.clone();
        let from_cut = edge == cut;
        let old = old.clone();
        let stop = stop.clone();
        load.push(lab.spawn_on(client, move || async move {
            let mut answers: Vec<Answer> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let path = &paths[i % paths.len()];
                i += 1;
                let reply = client::get(target, SERVICE, path, Duration::from_millis(300)).await;
                match reply {
                    Ok(reply) => {
                        answers.push((started, from_cut, reply.status, reply.text().contains(&old)))
                    }
                    Err(_) => {
                        answers.push((started, from_cut, 0, false));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            answers
        })?);
    }
    std::thread::sleep(Duration::from_millis(500));
    match how {
        Cut::Link => lab.set_link(cut, false)?,
        Cut::FromControl => lab.partition(cut, "control", true)?,
    }
    let cut_at = Instant::now();
    // Clients of the cut edge now fail; the others go on.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..crate::PURGED_OBJECTS {
        let file = lab.site().join(format!("lab/purge/obj-{i}.txt"));
        std::fs::write(&file, format!("purged object {i}, version {version}\n")).map_err(
            |source| LabError::Tool {
                tool: "origin content",
                source,
            },
        )?;
    }
    let sent = Instant::now();
    let report = purge(lab, paths.clone())?;
    let acked = Instant::now();
    let cut_edge_outcome = report["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node"] == cut))
        .and_then(|n| n["outcome"].as_str())
        .unwrap_or("missing")
        .to_owned();
    // Reconnected a while after the acknowledgement.
    let reconnect_after = Duration::from_millis(1_500).saturating_sub(cut_at.elapsed());
    std::thread::sleep(reconnect_after);
    match how {
        Cut::Link => lab.set_link(cut, true)?,
        Cut::FromControl => lab.partition(cut, "control", false)?,
    }
    let reconnected = Instant::now();
    std::thread::sleep(LOAD_AFTER_RECONNECT);
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for task in load {
        answers.extend(task.join()?);
    }
    let answered: Vec<&Answer> = answers.iter().filter(|a| a.2 == 200).collect();
    let after_ack: Vec<&&Answer> = answered.iter().filter(|a| a.0 >= acked).collect();
    // Over the link: what it served once back. Cut from the control node only: what it served
    // after the acknowledgement, while it still could not hear the control node.
    let since = if how == Cut::Link { reconnected } else { acked };
    let cut_after: Vec<&&Answer> = answered.iter().filter(|a| a.1 && a.0 >= since).collect();
    let stale_after_purge: Vec<Duration> = answered
        .iter()
        .filter(|a| a.1 && a.3 && a.0 >= sent)
        .map(|a| a.0.saturating_duration_since(sent))
        .collect();
    Ok(PurgeCutOff {
        cut_edge: cut.to_owned(),
        cut: how,
        cut_edge_outcome,
        acknowledged: acked.saturating_duration_since(sent),
        cut_to_ack: acked.saturating_duration_since(cut_at),
        requests: answers.len(),
        answered: answered.len(),
        after_ack: after_ack.len(),
        stale_after_ack: after_ack.iter().filter(|a| a.3).count(),
        cut_edge_after: cut_after.len(),
        cut_edge_stale: cut_after.iter().filter(|a| a.3).count(),
        cut_edge_stale_after_purge: stale_after_purge.len(),
        cut_edge_last_stale: stale_after_purge.into_iter().max(),
    })
}
