//! Signed URLs: paths an operator protects (`[signing]`) need a token, checked at the edge
//! before anything else sees the request, so an expired, forged or misplaced token costs no
//! parent or origin anything.
//!
//! A token is `exp=UNIX~acl=PATH~[ip=NETWORK~]kid=KEY~hmac=HEX`: HMAC-SHA256, with the secret
//! of key `kid`, over everything before `~hmac=`. `acl` is a path, or a prefix ending in `*`
//! (`/video/*` covers a whole manifest tree, as Akamai's `acl=` does); `ip` limits it to a client
//! network. It comes in the `token` query parameter or the `outpost_token` cookie; the query
//! parameter is removed before the request goes on, so tokens never split the cache. Two keys
//! can be valid at once, to rotate without breaking tokens already handed out.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use globset::GlobMatcher;
use hmac::{Hmac, Mac};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use outpost_server::{Body, Handler, Peer};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The `[signing]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The keys tokens may be signed with (more than one while rotating).
    #[serde(default)]
    pub keys: Vec<SigningKey>,
    /// Path globs that need a token.
    #[serde(default)]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKey {
    pub id: String,
    pub secret: String,
}

/// Why a signing table cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("signing path {path:?} is not a glob: {source}")]
    Path {
        path: String,
        source: globset::Error,
    },
    #[error("signing paths are set but there is no key")]
    NoKey,
    #[error("signing key {0:?} has an empty secret")]
    EmptySecret(String),
}

/// Why a request's token was refused (the 403's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("no token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unknown key")]
    UnknownKey,
    #[error("bad signature")]
    Forged,
    #[error("token expired")]
    Expired,
    #[error("token is not for this path")]
    WrongPath,
    #[error("token is not for this client")]
    WrongClient,
}

/// A checked signing table.
#[derive(Clone, Default)]
pub struct Signing {
    keys: Vec<SigningKey>,
    paths: Vec<GlobMatcher>,
}

/// The query parameter and the cookie a token comes in.
pub const TOKEN_PARAMETER: &str = "token";
pub const TOKEN_COOKIE: &str = "outpost_token";

impl Signing {
    pub fn new(config: &SigningConfig) -> Result<Self, SigningError> {
        if !config.paths.is_empty() && config.keys.is_empty() {
            return Err(SigningError::NoKey);
        }
        if let Some(key) = config.keys.iter().find(|k| k.secret.is_empty()) {
            return Err(SigningError::EmptySecret(key.id.clone()));
        }
        let paths = config
            .paths
            .iter()
            .map(|path| {
                crate::query::path_glob(path).map_err(|source| SigningError::Path {
                    path: path.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            keys: config.keys.clone(),
            paths,
        })
    }

    pub fn protects(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p.is_match(path))
    }

    /// A token for `acl` until `expires` (seconds since the epoch), signed with `key` (by
    /// id; the first key when `None`).
    pub fn sign(
        &self,
        acl: &str,
        expires: u64,
        network: Option<&str>,
        key: Option<&str>,
    ) -> Option<String> {
        let key = match key {
            Some(id) => self.keys.iter().find(|k| k.id == id)?,
            None => self.keys.first()?,
        };
        let mut fields = format!("exp={expires}~acl={acl}");
        if let Some(network) = network {
            fields.push_str(&format!("~ip={network}"));
        }
        fields.push_str(&format!("~kid={}", key.id));
        let mac = mac(&key.secret, &fields);
        Some(format!("{fields}~hmac={}", hex(&mac)))
    }

    /// Checks `token` for a request for `path` from `client` at `now`.
    pub fn check(
        &self,
        token: &str,
        path: &str,
        client: IpAddr,
        now: u64,
    ) -> Result<(), TokenRefusal> {
        let (fields, signature) = token.rsplit_once("~hmac=").ok_or(TokenRefusal::Malformed)?;
        let (mut expires, mut acl, mut network, mut kid) = (None, None, None, None);
        for field in fields.split('~') {
            match field.split_once('=') {
                Some(("exp", v)) => expires = v.parse::<u64>().ok(),
                Some(("acl", v)) => acl = Some(v),
                Some(("ip", v)) => network = Some(v),
                Some(("kid", v)) => kid = Some(v),
                _ => return Err(TokenRefusal::Malformed),
            }
        }
        let (Some(expires), Some(acl), Some(kid)) = (expires, acl, kid) else {
            return Err(TokenRefusal::Malformed);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or(TokenRefusal::UnknownKey)?;
        let signature = unhex(signature).ok_or(TokenRefusal::Malformed)?;
        let mut verifier = Hmac::<Sha256>::new_from_slice(key.secret.as_bytes())
            .map_err(|_| TokenRefusal::Forged)?;
        verifier.update(fields.as_bytes());
        // Constant-time comparison.
        verifier
            .verify_slice(&signature)
            .map_err(|_| TokenRefusal::Forged)?;
        if expires <= now {
            return Err(TokenRefusal::Expired);
        }
        let covered = match acl.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == acl,
        };
        if !covered {
            return Err(TokenRefusal::WrongPath);
        }
        if let Some(network) = network
            && !in_network(network, client).ok_or(TokenRefusal::Malformed)?
        {
            return Err(TokenRefusal::WrongClient);
        }
        Ok(())
    }
}

fn mac(secret: &str, fields: &str) -> Vec<u8> {
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return Vec::new();
    };
    mac.update(fields.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `ip` is in `network` (`203.0.113.0/24`, or one address); `None` when it does not
/// parse.
fn in_network(network: &str, ip: IpAddr) -> Option<bool> {
    let (address, bits) = match network.split_once('/') {
        Some((address, bits)) => (address.parse::<IpAddr>().ok()?, bits.parse::<u32>().ok()?),
        None => {
            let address = network.parse::<IpAddr>().ok()?;
            (address, if address.is_ipv4() { 32 } else { 128 })
        }
    };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match (address, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            Some(u32::from(net) & mask == u32::from(ip) & mask)
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            Some(u128::from(net) & mask == u128::from(ip) & mask)
        }
        (IpAddr::V4(_) | IpAddr::V6(_), _) if bits <= 128 => Some(false),
        _ => None,
    }
}

/// The token of a request, from the query or the cookie.
fn token_of(request: &Request<Body>) -> Option<String> {
    let from_query = crate::query::parameter(request.uri(), TOKEN_PARAMETER);
    from_query.or_else(|| {
        request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
            .map(|t| percent_decode(t.trim_matches('"')))
    })
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The edge's front for signed URLs.
pub struct SignedUrls<H> {
    inner: H,
    signing: Signing,
}

impl<H: Handler> SignedUrls<H> {
    pub fn new(inner: H, signing: Signing) -> Self {
        Self { inner, signing }
    }
}

impl<H: Handler> Handler for SignedUrls<H> {
    async fn handle(&self, mut request: Request<Body>, peer: Peer) -> Response<Body> {
        if self.signing.paths.is_empty() || !self.signing.protects(request.uri().path()) {
            return self.inner.handle(request, peer).await;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verdict = match token_of(&request) {
            None => Err(TokenRefusal::Missing),
            Some(token) => self
                .signing
                .check(&token, request.uri().path(), peer.remote.ip(), now),
        };
        if let Err(refusal) = verdict {
            tracing::info!(path = request.uri().path(), client = %peer.remote.ip(), %refusal, "signed URL refused");
            let mut response =
                outpost_server::body::text(StatusCode::FORBIDDEN, format!("forbidden: {refusal}"));
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return response;
        }
        if let Some(uri) = crate::query::without_parameter(request.uri(), TOKEN_PARAMETER) {
            *request.uri_mut() = uri;
        }
        self.inner.handle(request, peer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signing() -> Signing {
        Signing::new(&SigningConfig {
            keys: vec![
                SigningKey {
                    id: "new".into(),
                    secret: "s3cret-new".into(),
                },
                SigningKey {
                    id: "old".into(),
                    secret: "s3cret-old".into(),
                },
            ],
            paths: vec!["/video/**".into()],
        })
        .unwrap()
    }

    #[test]
    fn tokens_cover_their_tree_until_they_expire() {
        let s = signing();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let token = s.sign("/video/vod/*", 1000, None, None).unwrap();
        assert!(token.starts_with("exp=1000~acl=/video/vod/*~kid=new~hmac="));
        assert_eq!(
            s.check(&token, "/video/vod/master.m3u8", client, 999),
            Ok(())
        );
        assert_eq!(s.check(&token, "/video/vod/a/b.m4s", client, 999), Ok(()));
        assert_eq!(
            s.check(&token, "/video/live/x.m4s", client, 999),
            Err(TokenRefusal::WrongPath)
        );
        assert_eq!(
            s.check(&token, "/video/vod/master.m3u8", client, 1000),
            Err(TokenRefusal::Expired)
        );
        let exact = s.sign("/video/one.mp4", 1000, None, None).unwrap();
        assert_eq!(
            s.check(&exact, "/video/one.mp4x", client, 1),
            Err(TokenRefusal::WrongPath)
        );
    }

    #[test]
    fn forged_rotated_and_network_bound_tokens() {
        let s = signing();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let token = s.sign("/video/*", 1000, None, Some("old")).unwrap();
        assert_eq!(
            s.check(&token, "/video/x", client, 1),
            Ok(()),
            "the old key still works"
        );
        let forged = token.replace("exp=1000", "exp=9999");
        assert_eq!(
            s.check(&forged, "/video/x", client, 1),
            Err(TokenRefusal::Forged)
        );
        let widened = token.replace("acl=/video/*", "acl=/*");
        assert_eq!(
            s.check(&widened, "/admin", client, 1),
            Err(TokenRefusal::Forged)
        );
        let unknown = token.replace("kid=old", "kid=gone");
        assert_eq!(
            s.check(&unknown, "/video/x", client, 1),
            Err(TokenRefusal::UnknownKey)
        );
        for bad in [
            "",
            "garbage",
            "exp=1~hmac=zz",
            "a=b~hmac=00",
            "exp=x~acl=/~kid=new~hmac=00",
        ] {
            assert!(s.check(bad, "/video/x", client, 1).is_err(), "{bad}");
        }
        let bound = s
            .sign("/video/*", 1000, Some("203.0.113.0/24"), None)
            .unwrap();
        assert_eq!(s.check(&bound, "/video/x", client, 1), Ok(()));
        let elsewhere: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            s.check(&bound, "/video/x", elsewhere, 1),
            Err(TokenRefusal::WrongClient)
        );
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(s.check(&bound, "/video/x", mapped, 1), Ok(()));
    }
}
