//! Accounts in the operational store: dashboard users, API tokens, login
//! sessions, and each account's saved SQL queries.
//!
//! Nothing secret is stored in clear: users keep an argon2 PHC string (made
//! by the caller, `shoplake_server::auth`), tokens and session ids a BLAKE3
//! hash of the value handed out once. Roles are ordered: a `viewer` reads
//! dashboards and reports, an `analyst` also runs SQL, an `admin` also
//! manages keys, users and the pipeline.

use serde::Serialize;

use crate::error::{JobError, Result};
use crate::store::{Store, now_rfc3339};

/// What an account may do; each of viewer, analyst and admin includes the
/// ones before it. `orders` and `metrics` stand apart: a shop backend's API
/// token that creates, changes and reads orders and nothing else, and a
/// monitoring system's token that reads `/metrics` and nothing else (they
/// order below viewer, so every check of a person's role refuses them).
/// Every role may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Only `GET /metrics`: for a Prometheus scraper's token.
    Metrics,
    /// Only the orders API (`/api/orders`): for API tokens, not people.
    Orders,
    /// Dashboards and reports.
    Viewer,
    /// + ad-hoc SQL.
    Analyst,
    /// + keys, users, tokens and the pipeline.
    Admin,
}

impl Role {
    /// The roles of people, weakest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Analyst, Role::Admin];

    /// The roles of API tokens only.
    pub const TOKENS: [Role; 2] = [Role::Orders, Role::Metrics];

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Metrics => "metrics",
            Role::Orders => "orders",
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .chain(Role::TOKENS)
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                JobError::Invalid(format!(
                    "unknown role {s:?}: use viewer, analyst or admin (or orders or metrics, for a token)"
                ))
            })
    }

    /// Whether this role may use the orders API: change orders (`write`)
    /// or read them (order data holds customers' e-mail addresses: analysts
    /// and admins read it too).
    pub fn may_use_orders(self, write: bool) -> bool {
        match self {
            Role::Orders | Role::Admin => true,
            Role::Analyst => !write,
            Role::Viewer | Role::Metrics => false,
        }
    }

    /// Whether only API tokens may have this role (not people).
    pub fn token_only(self) -> bool {
        Role::TOKENS.contains(&self)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A dashboard user.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// argon2 PHC string.
    #[serde(skip)]
    pub password_hash: String,
    /// RFC 3339.
    pub created_at: String,
    /// When the password last changed.
    pub changed_at: String,
}

/// An API token (the token itself was shown once and is not kept).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Token {
    /// Row id.
    pub id: i64,
    /// What it is for (`grafana`, `ci`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    /// RFC 3339.
    pub created_at: String,
    /// After this it no longer works.
    pub expires_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// When it last authenticated a request (updated at most once a minute).
    pub last_used_at: Option<String>,
}

impl Token {
    /// Whether it authenticates requests at `now` (RFC 3339).
    pub fn is_live(&self, now: &str) -> bool {
        self.revoked_at.is_none() && self.expires_at.as_deref().is_none_or(|e| e > now)
    }
}

/// A login session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Whose.
    pub user: String,
    /// Their role now (a changed role applies at once).
    pub role: Role,
    /// The token forms and scripts must send back with every change.
    pub csrf: String,
    /// RFC 3339.
    pub expires_at: String,
}

fn role_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Role> {
    let s: String = r.get(i)?;
    Role::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Store {
    /// Adds a user; an error if the name is taken.
    pub fn add_user(&self, name: &str, role: Role, password_hash: &str) -> Result<()> {
        if role.token_only() {
            return Err(JobError::Invalid(format!(
                "{role} is a role for API tokens, not for people"
            )));
        }
        let now = now_rfc3339();
        let added = self.with(|c| {
            c.execute(
                "INSERT INTO users (name, role, password_hash, created_at, changed_at)
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(name) DO NOTHING",
                (name, role.name(), password_hash, &now),
            )
        })?;
        if added == 0 {
            return Err(JobError::Invalid(format!(
                "user {name:?} exists; change the password with `shoplake users passwd {name}`"
            )));
        }
        Ok(())
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>> {
        self.with(|c| {
            c.prepare(
                "SELECT name, role, password_hash, created_at, changed_at FROM users ORDER BY name",
            )?
            .query_map([], |r| {
                Ok(User {
                    name: r.get(0)?,
                    role: role_col(r, 1)?,
                    password_hash: r.get(2)?,
                    created_at: r.get(3)?,
                    changed_at: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    /// One user.
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        Ok(self.users()?.into_iter().find(|u| u.name == name))
    }

    /// Removes a user and ends their sessions; false if there was none.
    pub fn remove_user(&self, name: &str) -> Result<bool> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE user_name = ?1", [name])?;
            c.execute("DELETE FROM users WHERE name = ?1", [name])
        })
        .map(|n| n > 0)
    }

    /// Sets a user's password (and role, when given) and ends their
    /// sessions; false if there is no such user.
    pub fn update_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        role: Option<Role>,
    ) -> Result<bool> {
        if let Some(role) = role.filter(|r| r.token_only()) {
            return Err(JobError::Invalid(format!(
                "{role} is a role for API tokens, not for people"
            )));
        }
        let now = now_rfc3339();
        self.with(|c| {
            let mut n = 0;
            if let Some(h) = password_hash {
                n += c.execute(
                    "UPDATE users SET password_hash = ?2, changed_at = ?3 WHERE name = ?1",
                    (name, h, &now),
                )?;
            }
            if let Some(r) = role {
                n += c.execute(
                    "UPDATE users SET role = ?2 WHERE name = ?1",
                    (name, r.name()),
                )?;
            }
            if n > 0 {
                c.execute("DELETE FROM sessions WHERE user_name = ?1", [name])?;
            }
            Ok(n > 0)
        })
    }

    /// Records a token by the hash of its value.
    pub fn add_token(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        prefix: &str,
        expires_at: Option<&str>,
    ) -> Result<i64> {
        let now = now_rfc3339();
        self.with(|c| {
            c.execute(
                "INSERT INTO api_tokens (name, role, hash, prefix, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                (name, role.name(), hash, prefix, &now, expires_at),
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Every token, oldest first.
    pub fn tokens(&self) -> Result<Vec<Token>> {
        self.tokens_where("1 = 1", ())
    }

    fn tokens_where(&self, cond: &str, params: impl rusqlite::Params) -> Result<Vec<Token>> {
        self.with(|c| {
            c.prepare(&format!(
                "SELECT id, name, role, prefix, created_at, expires_at, revoked_at, last_used_at
                 FROM api_tokens WHERE {cond} ORDER BY id"
            ))?
            .query_map(params, |r| {
                Ok(Token {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    role: role_col(r, 2)?,
                    prefix: r.get(3)?,
                    created_at: r.get(4)?,
                    expires_at: r.get(5)?,
                    revoked_at: r.get(6)?,
                    last_used_at: r.get(7)?,
                })
            })?
            .collect()
        })
    }

    /// The token whose value hashes to `hash`, live or not.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<Token>> {
        Ok(self.tokens_where("hash = ?1", [hash])?.into_iter().next())
    }

    /// Notes that a token was used (at most once a minute per token).
    pub fn touch_token(&self, id: i64) -> Result<()> {
        let now = now_rfc3339();
        let minute_ago = (chrono::Utc::now() - chrono::Duration::minutes(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.with(|c| {
            c.execute(
                "UPDATE api_tokens SET last_used_at = ?2
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?3)",
                (id, &now, &minute_ago),
            )
        })?;
        Ok(())
    }

    /// Revokes the live tokens named `name` (or with id `name`); returns how
    /// many.
    pub fn revoke_token(&self, name: &str) -> Result<usize> {
        let now = now_rfc3339();
        self.with(|c| {
            c.execute(
                "UPDATE api_tokens SET revoked_at = ?2
                 WHERE revoked_at IS NULL AND (name = ?1 OR CAST(id AS TEXT) = ?1)",
                (name, &now),
            )
        })
    }

    /// Starts a session for `user`, found later by the hash of its id.
    pub fn add_session(&self, hash: &str, user: &str, csrf: &str, expires_at: &str) -> Result<()> {
        let now = now_rfc3339();
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [&now])?;
            c.execute(
                "INSERT INTO sessions (hash, user_name, csrf, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (hash, user, csrf, &now, expires_at),
            )
        })?;
        Ok(())
    }

    /// The live session whose id hashes to `hash`.
    pub fn session(&self, hash: &str) -> Result<Option<Session>> {
        let now = now_rfc3339();
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT s.user_name, u.role, s.csrf, s.expires_at
                 FROM sessions s JOIN users u ON u.name = s.user_name
                 WHERE s.hash = ?1 AND s.expires_at > ?2",
            )?;
            let mut rows = st.query_map((hash, &now), |r| {
                Ok(Session {
                    user: r.get(0)?,
                    role: role_col(r, 1)?,
                    csrf: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            })?;
            rows.next().transpose()
        })
    }

    /// Ends a session.
    pub fn remove_session(&self, hash: &str) -> Result<()> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE hash = ?1", [hash]))?;
        Ok(())
    }
}

/// A saved SQL query of one account.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SavedQuery {
    /// Row id.
    pub id: i64,
    /// Its name, unique per owner.
    pub name: String,
    /// The SQL.
    pub sql: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl Store {
    /// Saves `sql` as `owner`'s query `name` (replacing one of that name);
    /// returns its id.
    pub fn save_query(&self, owner: &str, name: &str, sql: &str) -> Result<i64> {
        let now = now_rfc3339();
        self.with(|c| {
            c.query_row(
                "INSERT INTO saved_queries (owner, name, sql, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (owner, name) DO UPDATE SET sql = excluded.sql, updated_at = excluded.updated_at
                 RETURNING id",
                (owner, name, sql, &now),
                |r| r.get(0),
            )
        })
    }

    /// `owner`'s saved queries, by name.
    pub fn saved_queries(&self, owner: &str) -> Result<Vec<SavedQuery>> {
        self.with(|c| {
            c.prepare(
                "SELECT id, name, sql, updated_at FROM saved_queries WHERE owner = ?1 ORDER BY name",
            )?
            .query_map([owner], |r| {
                Ok(SavedQuery {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    sql: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            })?
            .collect()
        })
    }

    /// Deletes `owner`'s saved query `id`; false if they have none such.
    pub fn delete_query(&self, owner: &str, id: i64) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "DELETE FROM saved_queries WHERE owner = ?1 AND id = ?2",
                (owner, id),
            )
        })
        .map(|n| n > 0)
    }
}
