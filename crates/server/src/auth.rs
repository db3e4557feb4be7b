//! Who is asking: passwords (argon2id), API tokens and login sessions, and
//! the role each request carries.
//!
//! A request to `/api/...` authenticates with `Authorization: Bearer <token>`
//! (a token from `shoplake tokens create`) or with the session cookie set by
//! `POST /login`. A session's changes (any method but GET/HEAD) must also
//! carry its CSRF token in the `X-CSRF-Token` header (or the `csrf` form
//! field): a page of another site can make the browser send the cookie, not
//! read the token. The cookie is `HttpOnly` and `SameSite=Strict`, and
//! `Secure` when `server.secure_cookies` is set (behind HTTPS).

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::http::{HeaderMap, StatusCode, header};
use shoplake_jobs::accounts::Role;
use shoplake_jobs::store::Store;

use crate::error::{Result, ServerError};
use crate::keys;

/// The session cookie's name.
pub const COOKIE: &str = "shoplake_session";

/// How long a login lasts.
pub const SESSION_HOURS: i64 = 12;

/// An argon2id PHC string of `password` with a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < 8 {
        return Err(ServerError::Invalid(
            "a password needs at least 8 characters".into(),
        ));
    }
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ServerError::Invalid(format!("hashing the password: {e}")))
}

/// Whether `password` matches the PHC string `phc`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A new random secret with `prefix` (`slt_` tokens, `sls_` sessions).
pub fn new_secret(prefix: &str) -> Result<String> {
    Ok(format!("{prefix}{}", &keys::new_key()?[3..]))
}

/// BLAKE3 of a token or session id, as stored.
pub fn hash_secret(s: &str) -> String {
    keys::hash_key(s)
}

/// A new API token: (the token, to show once; its row id).
pub fn create_token(
    store: &Store,
    name: &str,
    role: Role,
    expires_at: Option<&str>,
) -> Result<(String, i64)> {
    let token = new_secret("slt_")?;
    let id = store
        .add_token(name, role, &hash_secret(&token), &token[..8], expires_at)
        .map_err(|e| ServerError::Invalid(e.to_string()))?;
    Ok((token, id))
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// User or token name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// How they proved it.
    pub via: Via,
}

/// How a request authenticated.
#[derive(Debug, Clone, PartialEq)]
pub enum Via {
    /// A login session, with its CSRF token.
    Session {
        /// The hash of the session id (to log out).
        hash: String,
        /// The token changes must carry.
        csrf: String,
    },
    /// An API token.
    Token,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    /// 401 or 403.
    pub status: StatusCode,
    /// Why, for the client.
    pub reason: String,
}

impl Denied {
    fn unauthorized(reason: impl Into<String>) -> Denied {
        Denied {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// JWTs of an OpenID Connect provider, verified against its key set
/// (`[server.oidc]`), which is fetched at start and every 10 minutes.
pub struct Oidc {
    cfg: shoplake_core::config::OidcConfig,
    keys: std::sync::RwLock<Option<jsonwebtoken::jwk::JwkSet>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("jwks_url", &self.cfg.jwks_url)
            .finish()
    }
}

impl Oidc {
    /// The verifier of `cfg`; `None` when it is off.
    pub fn new(cfg: &shoplake_core::config::OidcConfig) -> Option<Arc<Oidc>> {
        if cfg.jwks_url.is_empty() {
            return None;
        }
        Some(Arc::new(Oidc {
            cfg: cfg.clone(),
            keys: std::sync::RwLock::new(None),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }))
    }

    /// Fetches the key set; returns how many keys it holds.
    pub async fn refresh(&self) -> Result<usize, String> {
        let set: jsonwebtoken::jwk::JwkSet = self
            .http
            .get(&self.cfg.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{}: {e}", self.cfg.jwks_url))?
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.cfg.jwks_url))
            .and_then(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| format!("{}: not a JSON Web Key Set: {e}", self.cfg.jwks_url))
            })?;
        let n = set.keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(set);
        Ok(n)
    }

    /// Refreshes the key set every 10 minutes (every 30 s while it fails).
    pub fn keep_fresh(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let wait = match self.refresh().await {
                    Ok(_) => 600,
                    Err(e) => {
                        tracing::warn!(error = %e, "OIDC keys not refreshed");
                        30
                    }
                };
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            }
        })
    }

    /// Verifies a JWT: signature by a key of the set, expiry, issuer and
    /// audience as configured; the role from the role claim.
    pub fn verify(&self, token: &str) -> Result<Principal, Denied> {
        use jsonwebtoken::{Validation, decode, decode_header};
        let bad = |why: String| Denied::unauthorized(format!("the token was refused: {why}"));
        let header = decode_header(token).map_err(|e| bad(e.to_string()))?;
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let set = keys
            .as_ref()
            .ok_or_else(|| bad("the provider's keys are not loaded yet".into()))?;
        let kid = header.kid.as_deref().unwrap_or_default();
        let jwk = set
            .find(kid)
            .ok_or_else(|| bad(format!("no key {kid:?} in the provider's key set")))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| bad(e.to_string()))?;
        let mut v = Validation::new(header.alg);
        if !self.cfg.issuer.is_empty() {
            v.set_issuer(&[&self.cfg.issuer]);
        }
        if self.cfg.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&[&self.cfg.audience]);
        }
        let data = decode::<serde_json::Value>(token, &key, &v).map_err(|e| bad(e.to_string()))?;
        let claims = data.claims;
        let named = |v: &serde_json::Value| v.as_str().and_then(|s| Role::parse(s).ok());
        let role = match claims.get(&self.cfg.role_claim) {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(named).max(),
            Some(v) => named(v),
            None => None,
        }
        .or_else(|| Role::parse(&self.cfg.default_role).ok())
        .ok_or_else(|| Denied {
            status: StatusCode::FORBIDDEN,
            reason: format!(
                "the token names no shoplake role (viewer, analyst or admin) in its {:?} claim",
                self.cfg.role_claim
            ),
        })?;
        let name = claims
            .get(&self.cfg.name_claim)
            .or_else(|| claims.get("sub"))
            .and_then(|v| v.as_str())
            .unwrap_or("oidc")
            .to_string();
        Ok(Principal {
            name,
            role,
            via: Via::Token,
        })
    }
}

/// Whether a bearer credential is a JWT (three base64url parts), not one
/// of our tokens.
fn is_jwt(token: &str) -> bool {
    !token.starts_with("slt_") && token.split('.').count() == 3
}

/// Authenticates a request from its headers. `None` from the store lookup
/// (no such token or session) and a revoked or expired token are 401; a JWT
/// goes to `oidc` (401 when OIDC is off).
pub fn authenticate(
    store: &Arc<Store>,
    oidc: Option<&Oidc>,
    headers: &HeaderMap,
) -> Result<Principal, Denied> {
    let internal = |e: shoplake_jobs::JobError| Denied {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        reason: format!("the account store failed: {e}"),
    };
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let value = auth.to_str().unwrap_or_default();
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(Denied::unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        };
        let token = token.trim();
        if is_jwt(token) {
            return match oidc {
                Some(o) => o.verify(token),
                None => Err(Denied::unauthorized(
                    "a JWT, but OIDC is off (server.oidc.jwks_url)",
                )),
            };
        }
        let t = store
            .token_by_hash(&hash_secret(token))
            .map_err(internal)?
            .ok_or_else(|| Denied::unauthorized("unknown API token"))?;
        let now = shoplake_jobs::store::now_rfc3339();
        if t.revoked_at.is_some() {
            return Err(Denied::unauthorized(format!(
                "the API token {:?} was revoked",
                t.name
            )));
        }
        if !t.is_live(&now) {
            return Err(Denied::unauthorized(format!(
                "the API token {:?} expired",
                t.name
            )));
        }
        if let Err(e) = store.touch_token(t.id) {
            tracing::warn!(error = %e, "token use not recorded");
        }
        return Ok(Principal {
            name: t.name,
            role: t.role,
            via: Via::Token,
        });
    }
    if let Some(id) = cookie(headers, COOKIE) {
        let hash = hash_secret(id);
        let s = store
            .session(&hash)
            .map_err(internal)?
            .ok_or_else(|| Denied::unauthorized("the session ended: log in again"))?;
        return Ok(Principal {
            name: s.user,
            role: s.role,
            via: Via::Session { hash, csrf: s.csrf },
        });
    }
    Err(Denied::unauthorized(
        "log in, or send `Authorization: Bearer <token>` (create one with `shoplake tokens create NAME --role viewer`)",
    ))
}

impl Principal {
    /// Refuses (403) a principal whose role is below `needed`.
    pub fn require(&self, needed: Role) -> Result<(), Denied> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(Denied {
                status: StatusCode::FORBIDDEN,
                reason: format!(
                    "{} has the role {}; this needs {needed}",
                    self.name, self.role
                ),
            })
        }
    }

    /// Refuses (403) a session's change that does not carry its CSRF token
    /// (`given`: the header or form field).
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), Denied> {
        match &self.via {
            Via::Token => Ok(()),
            Via::Session { csrf, .. } if given.is_some_and(|g| constant_eq(g, csrf)) => Ok(()),
            Via::Session { .. } => Err(Denied {
                status: StatusCode::FORBIDDEN,
                reason: "missing or wrong CSRF token (send the X-CSRF-Token header)".into(),
            }),
        }
    }
}

/// Compares two secrets in time independent of where they differ.
fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Starts a session for `user`: (the cookie value, the CSRF token).
pub fn start_session(store: &Store, user: &str) -> Result<(String, String)> {
    let id = new_secret("sls_")?;
    let csrf = new_secret("")?;
    let expires = (chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    store
        .add_session(&hash_secret(&id), user, &csrf, &expires)
        .map_err(|e| ServerError::Io(e.to_string()))?;
    Ok((id, csrf))
}

/// The `Set-Cookie` value for a session (`None`: one that ends it).
pub fn session_cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_HOURS * 3600
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// How many failed logins are allowed within [`THROTTLE_WINDOW`] before
/// further attempts are refused unchecked: per user name from one address,
/// per address (guessing many names) and per name from anywhere (a
/// distributed guess). The per-name limit is high so that a stranger cannot
/// lock an account's owner out from another address for long.
pub const LOGIN_LIMITS: [(Scope, usize); 3] =
    [(Scope::NameAndIp, 5), (Scope::Ip, 30), (Scope::Name, 100)];

/// The window failed logins are counted over.
pub const THROTTLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What a failed-login count is kept per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One user name from one address.
    NameAndIp,
    /// One address, whatever the name.
    Ip,
    /// One user name, from anywhere.
    Name,
}

/// Failed logins of the last [`THROTTLE_WINDOW`], to refuse password
/// guessing: a guess costs the attacker a refusal, not an argon2 check.
/// Memory is bounded: at most [`Throttle::MAX_KEYS`] keys (the stalest go
/// first) of at most the scope's limit each.
#[derive(Default)]
pub struct Throttle {
    failures: std::sync::Mutex<
        std::collections::HashMap<(Scope, String), std::collections::VecDeque<std::time::Instant>>,
    >,
}

impl Throttle {
    /// Keys kept at most.
    pub const MAX_KEYS: usize = 100_000;

    fn keys(name: &str, ip: Option<std::net::IpAddr>) -> Vec<(Scope, usize, String)> {
        let name = name.trim().to_lowercase();
        let ip = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        LOGIN_LIMITS
            .iter()
            .map(|&(scope, limit)| {
                let key = match scope {
                    Scope::NameAndIp => format!("{name}\u{0}{ip}"),
                    Scope::Ip => ip.clone(),
                    Scope::Name => name.clone(),
                };
                (scope, limit, key)
            })
            .collect()
    }

    /// `Some(seconds to wait)` when an attempt for `name` from `ip` must be
    /// refused now.
    pub fn check(
        &self,
        name: &str,
        ip: Option<std::net::IpAddr>,
        now: std::time::Instant,
    ) -> Option<u64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(name, ip)
            .into_iter()
            .filter_map(|(scope, limit, key)| {
                let q = map.get(&(scope, key))?;
                let recent: Vec<_> = q
                    .iter()
                    .filter(|t| now.duration_since(**t) < THROTTLE_WINDOW)
                    .collect();
                // wait until the oldest failure that counts leaves the window
                (recent.len() >= limit).then(|| {
                    let oldest = *recent[recent.len() - limit];
                    (THROTTLE_WINDOW - now.duration_since(oldest))
                        .as_secs()
                        .max(1)
                })
            })
            .max()
    }

    /// Records a failed login.
    pub fn failed(&self, name: &str, ip: Option<std::net::IpAddr>, now: std::time::Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX_KEYS {
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < THROTTLE_WINDOW)
            });
            if map.len() >= Self::MAX_KEYS
                && let Some(stalest) = map
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| k.clone())
            {
                map.remove(&stalest);
            }
        }
        for (scope, limit, key) in Self::keys(name, ip) {
            let q = map.entry((scope, key)).or_default();
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= THROTTLE_WINDOW)
                || q.len() >= limit
            {
                q.pop_front();
            }
            q.push_back(now);
        }
    }

    /// A successful login forgets the name's failures from that address.
    pub fn succeeded(&self, name: &str, ip: Option<std::net::IpAddr>) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for (scope, _, key) in Self::keys(name, ip) {
            if scope == Scope::NameAndIp {
                map.remove(&(scope, key));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves_and_short_ones_are_refused() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; shoplake_session=sls_x".parse().unwrap(),
        );
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("sls_x"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn failed_logins_are_throttled_per_name_and_address_then_forgiven() {
        use std::time::{Duration, Instant};
        let t = Throttle::default();
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let now = Instant::now();
        for i in 0..5 {
            assert_eq!(t.check("Ann", Some(a), now), None, "attempt {i}");
            t.failed("Ann", Some(a), now);
        }
        let wait = t.check("ann ", Some(a), now).expect("6th attempt refused");
        assert!((1..=900).contains(&wait), "{wait}");
        // the owner from another address is not locked out
        assert_eq!(t.check("ann", Some(b), now), None);
        // nor is another name from the same address (yet)
        assert_eq!(t.check("bob", Some(a), now), None);
        // the window passes
        assert_eq!(
            t.check(
                "ann",
                Some(a),
                now + THROTTLE_WINDOW + Duration::from_secs(1)
            ),
            None
        );
        // one address guessing many names is stopped too
        for i in 0..30 {
            t.failed(&format!("user{i}"), Some(b), now);
        }
        assert!(t.check("someone-new", Some(b), now).is_some());
        // success forgets the name's failures from that address
        let c: std::net::IpAddr = "10.0.0.3".parse().unwrap();
        for _ in 0..4 {
            t.failed("carl", Some(c), now);
        }
        t.succeeded("carl", Some(c));
        for _ in 0..4 {
            t.failed("carl", Some(c), now);
        }
        assert_eq!(t.check("carl", Some(c), now), None);
    }
}
