//! The PostgreSQL endpoint's side in the server: who may log in (shoplake's
//! users, analysts and admins, or an API token of those roles as the
//! password, with the login page's throttle against password guessing).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use shoplake_jobs::accounts::Role;
use shoplake_pgwire::{Authenticator, Refusal};

use crate::api::{Api, DUMMY_HASH};
use crate::auth;

/// Checks PostgreSQL logins against the user store.
pub(crate) struct PgAuth {
    pub(crate) api: Arc<Api>,
}

impl std::fmt::Debug for PgAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgAuth")
    }
}

#[async_trait::async_trait]
impl Authenticator for PgAuth {
    async fn authenticate(&self, user: &str, password: &str, peer: IpAddr) -> Result<(), Refusal> {
        let throttle = &self.api.throttle;
        if let Some(wait) = throttle.check(user, Some(peer), Instant::now()) {
            return Err(Refusal::Throttled(wait));
        }
        let store = self.api.store.clone();
        let (name, pw) = (user.to_string(), password.to_string());
        // argon2 costs tens of milliseconds of CPU: not on the I/O threads
        let found = tokio::task::spawn_blocking(move || {
            // an API token as the password (any user name): for BI tools'
            // service accounts
            if pw.starts_with("slt_") {
                let now = shoplake_jobs::store::now_rfc3339();
                let token = store.token_by_hash(&auth::hash_secret(&pw)).ok().flatten();
                return token
                    .filter(|t| t.revoked_at.is_none() && t.is_live(&now))
                    .map(|t| {
                        let _ = store.touch_token(t.id);
                        t.role
                    });
            }
            let user = store.user(&name).ok().flatten();
            // a missing user costs a hash too, so timing does not tell names apart
            let hash = user
                .as_ref()
                .map_or(DUMMY_HASH.as_str(), |u| u.password_hash.as_str());
            let ok = auth::verify_password(&pw, hash);
            user.filter(|_| ok).map(|u| u.role)
        })
        .await
        .ok()
        .flatten();
        match found {
            None => {
                throttle.failed(user, Some(peer), Instant::now());
                Err(Refusal::BadPassword)
            }
            Some(role) => {
                throttle.succeeded(user, Some(peer));
                if role >= Role::Analyst {
                    Ok(())
                } else {
                    Err(Refusal::NotAllowed(format!(
                        "user \"{user}\" is a {role}: SQL over the PostgreSQL endpoint needs the analyst or admin role (an admin can change it: `shoplake users passwd {user} --role analyst`)"
                    )))
                }
            }
        }
    }
}
