//! Network namespaces as hosts: made and removed with `ip` (iproute2), and code run inside one
//! on a thread of its own (`setns` moves only the calling thread; every socket that thread or
//! the threads it starts opens belongs to the namespace).

use std::fs::File;
use std::future::Future;
use std::process::Command;

use crate::LabError;

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<(), LabError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| LabError::Tool { tool: "ip", source })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The namespaces that exist now, by name.
pub fn existing() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Makes namespace `name` with its loopback up.
pub fn create(name: &str) -> Result<(), LabError> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])
}

/// Removes namespace `name` and the interfaces in it; a missing namespace is no error.
pub fn delete(name: &str) {
    if existing().iter().any(|n| n == name) {
        let _ = ip(&["netns", "del", name]);
    }
}

/// Runs `task` to completion on a new thread inside namespace `name`, on a runtime of its
/// own, and returns what it returns.
pub fn run_in<T, F, Fut>(name: &str, task: F) -> Result<T, LabError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    spawn_in(name, task)?.join()
}

/// A task running inside a namespace, started by [`spawn_in`].
pub struct InNamespace<T> {
    namespace: String,
    thread: std::thread::JoinHandle<Result<T, LabError>>,
}

impl<T> InNamespace<T> {
    /// Waits for the task and returns its result.
    pub fn join(self) -> Result<T, LabError> {
        self.thread.join().map_err(|_| LabError::Panicked {
            namespace: self.namespace,
        })?
    }

    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// Starts `task` on a new thread inside namespace `name`, on a runtime of its own.
pub fn spawn_in<T, F, Fut>(name: &str, task: F) -> Result<InNamespace<T>, LabError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).map_err(|source| LabError::Namespace {
        namespace: name.to_owned(),
        reason: source.to_string(),
    })?;
    let namespace = name.to_owned();
    let inside = namespace.clone();
    let thread = std::thread::Builder::new()
        .name(format!("lab-{name}"))
        .spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| {
                LabError::Namespace {
                    namespace: inside.clone(),
                    reason: errno.to_string(),
                }
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| LabError::Tool {
                    tool: "tokio runtime",
                    source,
                })?;
            Ok(runtime.block_on(task()))
        })
        .map_err(|source| LabError::Tool {
            tool: "thread",
            source,
        })?;
    Ok(InNamespace { namespace, thread })
}
