//! The players an edge serves, one entry per CMCD session (`sid`): what each last reported
//! (bitrate, buffer, rebuffering) and how often it asked. Bounded: at most [`MAX_SESSIONS`],
//! the least recently seen out, and a session idle for [`IDLE`] is forgotten. Served on the
//! edge's admin listener as `GET /cmcd/sessions` (behind the admin token: session ids are the
//! players'), which the dashboard reads; never a metric label.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use outpost_server::Body;
use outpost_server::admin::AdminExtension;
use serde::Serialize;

use crate::cmcd::Cmcd;

/// Sessions kept per edge.
pub const MAX_SESSIONS: u64 = 256;
/// A session not heard from for this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Session {
    content: Option<String>,
    stream_type: Option<String>,
    first_seen: Instant,
    last_seen: Instant,
    requests: u64,
    bitrate_kbps: Option<u64>,
    buffer_ms: Option<u64>,
    starvations: u64,
    last_path: String,
}

/// One session as `GET /cmcd/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SessionView {
    pub session: String,
    pub content: Option<String>,
    /// `v` VOD, `l` live (CMCD `st`).
    pub stream_type: Option<String>,
    pub requests: u64,
    pub bitrate_kbps: Option<u64>,
    pub buffer_s: Option<f64>,
    pub starvations: u64,
    pub last_path: String,
    pub playing_s: f64,
    pub idle_s: f64,
}

/// The sessions of one edge.
#[derive(Clone)]
pub struct CmcdSessions {
    sessions: moka::sync::Cache<String, Arc<Mutex<Session>>>,
}

impl Default for CmcdSessions {
    fn default() -> Self {
        Self {
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(IDLE)
                .build(),
        }
    }
}

impl CmcdSessions {
    /// One request of a player that sent a session id.
    pub fn record(&self, cmcd: &Cmcd, path: &str) {
        let Some(id) = cmcd.session.as_deref() else {
            return;
        };
        let now = Instant::now();
        let entry = self.sessions.get_with(id.to_owned(), || {
            Arc::new(Mutex::new(Session {
                content: None,
                stream_type: None,
                first_seen: now,
                last_seen: now,
                requests: 0,
                bitrate_kbps: None,
                buffer_ms: None,
                starvations: 0,
                last_path: String::new(),
            }))
        });
        let mut session = entry.lock().unwrap_or_else(|e| e.into_inner());
        session.last_seen = now;
        session.requests += 1;
        if cmcd.content.is_some() {
            session.content.clone_from(&cmcd.content);
        }
        if cmcd.stream_type.is_some() {
            session.stream_type.clone_from(&cmcd.stream_type);
        }
        if cmcd.bitrate_kbps.is_some() {
            session.bitrate_kbps = cmcd.bitrate_kbps;
        }
        if cmcd.buffer_ms.is_some() {
            session.buffer_ms = cmcd.buffer_ms;
        }
        if cmcd.starved {
            session.starvations += 1;
        }
        session.last_path = path.chars().take(200).collect();
    }

    /// Every session, the most recently seen first.
    pub fn list(&self) -> Vec<SessionView> {
        let now = Instant::now();
        let mut all: Vec<(Instant, SessionView)> = self
            .sessions
            .iter()
            .map(|(id, entry)| {
                let s = entry.lock().unwrap_or_else(|e| e.into_inner()).clone();
                (
                    s.last_seen,
                    SessionView {
                        session: (*id).clone(),
                        content: s.content,
                        stream_type: s.stream_type,
                        requests: s.requests,
                        bitrate_kbps: s.bitrate_kbps,
                        buffer_s: s.buffer_ms.map(|ms| ms as f64 / 1000.0),
                        starvations: s.starvations,
                        last_path: s.last_path,
                        playing_s: s.last_seen.duration_since(s.first_seen).as_secs_f64(),
                        idle_s: now.saturating_duration_since(s.last_seen).as_secs_f64(),
                    },
                )
            })
            .collect();
        all.sort_by_key(|(seen, _)| std::cmp::Reverse(*seen));
        all.into_iter().map(|(_, view)| view).collect()
    }
}

/// `GET /cmcd/sessions` on the edge's admin listener.
pub struct SessionsAdmin(pub CmcdSessions);

impl AdminExtension for SessionsAdmin {
    fn prefix(&self) -> &'static str {
        "/cmcd"
    }

    fn handle(
        &self,
        request: Request<Body>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            match (request.method(), request.uri().path()) {
                (&http::Method::GET, "/cmcd/sessions") => {
                    outpost_server::body::json(&self.0.list())
                }
                _ => outpost_server::body::text(
                    http::StatusCode::NOT_FOUND,
                    "CMCD endpoints: GET /cmcd/sessions",
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmcd(query: &str) -> Cmcd {
        let uri: http::Uri = format!("/v/seg.m4s?CMCD={query}").parse().unwrap();
        Cmcd::from_request(&uri, &http::HeaderMap::new()).unwrap()
    }

    #[test]
    fn each_session_keeps_what_its_player_last_said_and_counts_rebuffering() {
        let sessions = CmcdSessions::default();
        sessions.record(
            &cmcd("br%3D800%2Cbl%3D4000%2Csid%3D%22a%22%2Ccid%3D%22vod-1%22%2Cst%3Dv"),
            "/v/1.m4s",
        );
        sessions.record(&cmcd("br%3D3200%2Cbl%3D0%2Cbs%2Csid%3D%22a%22"), "/v/2.m4s");
        sessions.record(&cmcd("br%3D1600%2Csid%3D%22b%22"), "/w/1.m4s");
        sessions.record(&cmcd("br%3D1600"), "/x/1.m4s");
        sessions.sessions.run_pending_tasks();
        let list = sessions.list();
        assert_eq!(list.len(), 2, "no session id, no session: {list:?}");
        assert_eq!(list[0].session, "b", "the most recently seen first");
        let a = &list[1];
        assert_eq!(
            (a.content.as_deref(), a.stream_type.as_deref(), a.requests),
            (Some("vod-1"), Some("v"), 2)
        );
        assert_eq!(
            (a.bitrate_kbps, a.buffer_s, a.starvations),
            (Some(3200), Some(0.0), 1)
        );
        assert_eq!(a.last_path, "/v/2.m4s");
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = CmcdSessions::default();
        for i in 0..(MAX_SESSIONS * 4) {
            sessions.record(&cmcd(&format!("sid%3D%22s{i}%22")), "/v");
        }
        sessions.sessions.run_pending_tasks();
        assert!(sessions.sessions.entry_count() <= MAX_SESSIONS);
    }
}
