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
}
