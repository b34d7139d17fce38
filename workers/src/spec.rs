//! What a deploy says about a worker besides its code: name, routes, configuration values and
//! limits. Stored beside the component so a restarted edge runs the same thing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::DeployError;
use crate::route::Route;

/// Largest memory cap a deploy may ask for.
pub const MAX_MEMORY_MIB: u32 = 1024;
/// Largest CPU-time deadline a deploy may ask for.
pub const MAX_CPU_MS: u32 = 30_000;

/// A worker's deploy-time settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSpec {
    /// `[a-z0-9-]`, at most 63 characters.
    pub name: String,
    /// Route patterns (`www.outpost.test/api/*`, `*.outpost.test/*`).
    pub routes: Vec<String>,
    /// Configuration values and secrets: environment variables and `wasi:config` values of the
    /// worker. Never logged.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Memory cap of one instance.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// CPU time one request may use.
    #[serde(default = "default_cpu_ms")]
    pub cpu_ms: u32,
    /// Instances running at once; more requests wait in a queue.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u32,
    /// Requests that may wait for an instance; past it, 503 at once.
    #[serde(default = "default_max_queued")]
    pub max_queued: u32,
    /// Outbound requests one invocation may make.
    #[serde(default = "default_max_outbound")]
    pub max_outbound: u32,
    /// Hosts outbound requests may reach; empty means the hosts of the worker's own routes
    /// and the edge's origin.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Keys the worker may keep in its key-value store.
    #[serde(default = "default_kv_max_keys")]
    pub kv_max_keys: u64,
    /// Bytes (bucket names, keys and values) the worker may keep in its key-value store, in
    /// MiB.
    #[serde(default = "default_kv_max_mib")]
    pub kv_max_mib: u64,
    /// Wall-clock time for the whole response, body included, in seconds: a client that
    /// stops reading cannot hold an instance longer.
    #[serde(default = "default_deadline_secs")]
    pub deadline_secs: u32,
}

/// The limits a deploy gets unless it says otherwise (the CLI's defaults too).
pub mod defaults {
    pub const MEMORY_MIB: u32 = 128;
    pub const CPU_MS: u32 = 50;
    pub const MAX_CONCURRENT: u32 = 64;
    pub const MAX_QUEUED: u32 = 256;
    pub const MAX_OUTBOUND: u32 = 8;
    pub const KV_MAX_KEYS: u64 = 10_000;
    pub const KV_MAX_MIB: u64 = 16;
    pub const DEADLINE_SECS: u32 = 300;
}

fn default_kv_max_keys() -> u64 {
    defaults::KV_MAX_KEYS
}
fn default_kv_max_mib() -> u64 {
    defaults::KV_MAX_MIB
}
fn default_deadline_secs() -> u32 {
    defaults::DEADLINE_SECS
}

fn default_memory_mib() -> u32 {
    defaults::MEMORY_MIB
}
fn default_cpu_ms() -> u32 {
    defaults::CPU_MS
}
fn default_max_concurrent() -> u32 {
    defaults::MAX_CONCURRENT
}
fn default_max_queued() -> u32 {
    defaults::MAX_QUEUED
}
fn default_max_outbound() -> u32 {
    defaults::MAX_OUTBOUND
}

impl WorkerSpec {
    /// A spec with the default limits.
    pub fn new(name: impl Into<String>, routes: Vec<String>) -> Self {
        Self {
            name: name.into(),
            routes,
            env: BTreeMap::new(),
            memory_mib: default_memory_mib(),
            cpu_ms: default_cpu_ms(),
            max_concurrent: default_max_concurrent(),
            max_queued: default_max_queued(),
            max_outbound: default_max_outbound(),
            allowed_hosts: Vec::new(),
            kv_max_keys: default_kv_max_keys(),
            kv_max_mib: default_kv_max_mib(),
            deadline_secs: default_deadline_secs(),
        }
    }

    /// What the worker may keep in its key-value store.
    pub fn kv_quota(&self) -> crate::kv::KvQuota {
        crate::kv::KvQuota {
            max_keys: self.kv_max_keys,
            max_bytes: self.kv_max_mib.saturating_mul(1 << 20),
        }
    }

    /// Checks everything that can be checked without the code; returns the parsed routes.
    pub fn validate(&self) -> Result<Vec<Route>, DeployError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.name.starts_with('-');
        if !name_ok {
            return Err(DeployError::BadSpec(format!(
                "worker name {:?}: use 1 to 63 of a-z, 0-9 and '-', not starting with '-'",
                self.name
            )));
        }
        if self.routes.is_empty() {
            return Err(DeployError::BadSpec(
                "a worker needs at least one route, e.g. --route 'www.outpost.test/*'".to_owned(),
            ));
        }
        if !(1..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(DeployError::BadSpec(format!(
                "memory_mib {} must be between 1 and {MAX_MEMORY_MIB}",
                self.memory_mib
            )));
        }
        if self.deadline_secs == 0 {
            return Err(DeployError::BadSpec(
                "deadline_secs must be at least 1".to_owned(),
            ));
        }
        if !(1..=MAX_CPU_MS).contains(&self.cpu_ms) {
            return Err(DeployError::BadSpec(format!(
                "cpu_ms {} must be between 1 and {MAX_CPU_MS}",
                self.cpu_ms
            )));
        }
        if self.max_concurrent == 0 {
            return Err(DeployError::BadSpec(
                "max_concurrent must be at least 1".to_owned(),
            ));
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(DeployError::BadSpec(format!(
                    "env key {key:?} is not a variable name"
                )));
            }
        }
        self.routes
            .iter()
            .map(|r| Route::parse(r).map_err(|e| DeployError::BadSpec(e.to_string())))
            .collect()
    }
}
