//! What every edge and parent does to follow the control node's purges: apply each pushed
//! purge and note its number, ask for the purges after its last one every sync interval (at
//! once on a gap in the numbers, pushed or named by a peer), and renew its purge lease each
//! time it has them all. The lease ([`PurgeLease`]) holds the node's place in the sequence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use outpost_cache::{HttpClient, PurgeLease};
use outpost_server::ShutdownSignal;
use outpost_server::admin::{Purge, PurgeRequest};

use super::PurgeSync;
use super::log::Catchup;

/// One node's view of the fleet's purge sequence.
pub struct Follower {
    node: String,
    /// The control node's admin URL.
    control: http::Uri,
    token: String,
    client: HttpClient,
    cache: Arc<dyn Purge>,
    lease: Arc<PurgeLease>,
    settings: PurgeSync,
}

impl Follower {
    /// Follows the control node at `control` for `node`, whose cache is `cache` with `lease`
    /// (required from now on: the node revalidates until its first sync).
    pub fn new(
        node: &str,
        control: http::Uri,
        token: String,
        client: HttpClient,
        cache: Arc<dyn Purge>,
        lease: Arc<PurgeLease>,
        settings: PurgeSync,
    ) -> Arc<Self> {
        lease.require();
        Arc::new(Self {
            node: node.to_owned(),
            control,
            token,
            client,
            cache,
            lease,
            settings,
        })
    }

    /// The last purge applied with all before it.
    pub fn applied(&self) -> u64 {
        self.lease.applied()
    }

    /// Asks the control node for what this node missed, applies it, and renews the lease.
    async fn sync(&self) -> Result<(), String> {
        let asked = Instant::now();
        let after = self.applied();
        let path = format!("/fleet/purges?after={after}&node={}", self.node);
        let exchange = async {
            let answer = super::admin_exchange(
                &self.client,
                &self.control,
                &self.token,
                Method::GET,
                &path,
                None,
                bytes::Bytes::new(),
            )
            .await?;
            serde_json::from_slice::<Catchup>(&super::success(answer)?)
                .map_err(|e| format!("its answer: {e}"))
        };
        let catchup = tokio::time::timeout(self.settings.lease(), exchange)
            .await
            .map_err(|_| "no answer within the lease".to_owned())??;
        if !catchup.complete {
            tracing::warn!(node = %self.node, after, head = catchup.head, "missed more purges than the control node keeps: purging everything");
            self.cache.purge(&PurgeRequest {
                all: true,
                ..PurgeRequest::default()
            });
        }
        let missed = catchup.purges.len();
        for purge in &catchup.purges {
            self.cache.purge(purge);
        }
        if missed > 0 {
            tracing::info!(node = %self.node, after, head = catchup.head, missed, "caught up on missed purges");
        }
        self.lease.caught_up(catchup.head);
        // The lease runs from the question, not the answer: the control node's count of it
        // starts when it answered, which is later.
        self.lease.renew(asked + self.settings.lease());
        Ok(())
    }

    /// Syncs every interval, and at once on a gap, until `shutdown`.
    pub fn spawn(self: &Arc<Self>, mut shutdown: ShutdownSignal) {
        let follower = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(follower.settings.sync_interval());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = follower.lease.gap() => {}
                    () = shutdown.triggered() => return,
                }
                match follower.sync().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!(node = %follower.node, "control node reached again: purge lease renewed");
                    }
                    Ok(()) => {}
                    Err(error) if !failing => {
                        failing = true;
                        tracing::warn!(node = %follower.node, %error, lease_left = ?follower.lease.remaining().unwrap_or(Duration::ZERO), "control node unreachable: when the purge lease runs out, stored objects are revalidated before they are served");
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

/// A node's purge endpoint when it follows a control node: purges as the cache does, and
/// notes the purge's number.
pub struct SequencedPurge {
    pub cache: Arc<dyn Purge>,
    pub follower: Arc<Follower>,
}

impl Purge for SequencedPurge {
    fn purge(&self, request: &PurgeRequest) -> u64 {
        let purged = self.cache.purge(request);
        if let Some(seq) = request.seq {
            self.follower.lease.applied_one(seq);
        }
        purged
    }

    fn drain(&self, draining: bool) -> bool {
        self.cache.drain(draining)
    }
}
