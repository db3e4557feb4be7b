//! Users, API tokens and write keys, managed by an admin from the browser
//! (`/admin`) or a script (`/api/users`, `/api/tokens`, `/api/keys`): the
//! same changes as `shoplake users|tokens|keys`.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /api/users`, `POST /api/users` | list; add `{name, role, password}` |
//! | `PATCH /api/users/{name}`, `DELETE /api/users/{name}` | `{role?, password?}`; remove |
//! | `GET /api/tokens`, `POST /api/tokens` | list; create `{name, role, expires_days?}` (the token is in the answer, once) |
//! | `DELETE /api/tokens/{name}` | revoke (by name or id) |
//! | `GET /api/keys`, `POST /api/keys` | list; create `{name, origins?, rate_limit?}` (the key is in the answer, once) |
//! | `DELETE /api/keys/{name}` | revoke a source's keys (or one key by prefix) |
//! | `GET /admin`, `POST /admin` | the page, and its forms |
//!
//! Every route needs the admin role; changes from a login session carry its
//! CSRF token. The last admin cannot be removed or demoted (nobody could
//! undo it from here). A revoked write key stops working within seconds:
//! the collector re-reads the key file when it changes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use shoplake_jobs::accounts::Role;

use crate::api::{Api, ApiError, ApiResult};
use crate::auth::{self, Principal, Via};
use crate::dashboard::html::{esc, page, table};
use crate::dashboard::{PageError, gate};
use crate::keys::KeyFile;

pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/api/users", get(list_users).post(add_user))
        .route(
            "/api/users/{name}",
            axum::routing::patch(update_user).delete(remove_user),
        )
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{name}", axum::routing::delete(revoke_token))
        .route("/api/keys", get(list_keys).post(create_key))
        .route("/api/keys/{name}", axum::routing::delete(revoke_key))
        .route("/admin", get(admin_page).post(admin_form))
        .with_state(api)
}

/// One change an admin makes.
#[derive(Debug)]
enum Change {
    AddUser {
        name: String,
        role: Role,
        password: String,
    },
    UpdateUser {
        name: String,
        role: Option<Role>,
        password: Option<String>,
    },
    RemoveUser {
        name: String,
    },
    CreateToken {
        name: String,
        role: Role,
        expires_days: Option<u32>,
    },
    RevokeToken {
        name: String,
    },
    CreateKey {
        name: String,
        origins: Vec<String>,
        rate_limit: f64,
    },
    RevokeKey {
        name: String,
    },
}

/// What a change did: what to tell the admin, and a secret shown once.
struct Done {
    status: StatusCode,
    message: String,
    secret: Option<String>,
    expires_at: Option<String>,
}

/// Serialises changes to the key file (the CLI writes it too; its writes
/// are atomic renames, so a reader never sees half a file).
static KEY_FILE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn parse_role(s: &str) -> ApiResult<Role> {
    Role::parse(s.trim()).map_err(|e| bad(e.to_string()))
}

/// Refuses a change that would leave no admin.
fn keep_an_admin(api: &Api, name: &str) -> ApiResult<()> {
    let users = api.store.users().map_err(internal)?;
    let target_is_admin = users
        .iter()
        .any(|u| u.name == name && u.role == Role::Admin);
    let admins = users.iter().filter(|u| u.role == Role::Admin).count();
    if target_is_admin && admins == 1 {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("{name} is the last admin: add another admin first"),
        ));
    }
    Ok(())
}

/// Applies `c` (blocking: argon2, SQLite and the key file).
fn apply(api: &Api, who: &Principal, c: Change) -> ApiResult<Done> {
    let done = |status, message: String| Done {
        status,
        message,
        secret: None,
        expires_at: None,
    };
    let not_found = |what: String| ApiError(StatusCode::NOT_FOUND, what);
    tracing::info!(admin = %who.name, change = ?Redacted(&c), "admin change");
    match c {
        Change::AddUser {
            name,
            role,
            password,
        } => {
            let name = name.trim().to_string();
            if name.is_empty()
                || name.chars().count() > 64
                || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(bad(
                    "a user name needs 1–64 characters and no spaces".to_string()
                ));
            }
            let hash = auth::hash_password(&password).map_err(|e| bad(e.to_string()))?;
            api.store
                .add_user(&name, role, &hash)
                .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
            Ok(done(StatusCode::CREATED, format!("added {name} ({role})")))
        }
        Change::UpdateUser {
            name,
            role,
            password,
        } => {
            if role.is_none() && password.is_none() {
                return Err(bad("give a new role, a new password or both"));
            }
            if api.store.user(&name).map_err(internal)?.is_none() {
                return Err(not_found(format!("no user {name:?}")));
            }
            if role.is_some_and(|r| r != Role::Admin) {
                keep_an_admin(api, &name)?;
            }
            let hash = match &password {
                Some(p) => Some(auth::hash_password(p).map_err(|e| bad(e.to_string()))?),
                None => None,
            };
            api.store
                .update_user(&name, hash.as_deref(), role)
                .map_err(internal)?;
            Ok(done(
                StatusCode::OK,
                format!("updated {name}; their sessions ended"),
            ))
        }
        Change::RemoveUser { name } => {
            keep_an_admin(api, &name)?;
            if !api.store.remove_user(&name).map_err(internal)? {
                return Err(not_found(format!("no user {name:?}")));
            }
            Ok(done(
                StatusCode::OK,
                format!("removed {name}; their sessions ended"),
            ))
        }
        Change::CreateToken {
            name,
            role,
            expires_days,
        } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().count() > 64 {
                return Err(bad("a token needs a name of 1–64 characters"));
            }
            if expires_days == Some(0) {
                return Err(bad("expires_days must be at least 1 (or left out)"));
            }
            let expires = expires_days.map(|d| {
                (chrono::Utc::now() + chrono::Duration::days(i64::from(d)))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            });
            let (token, _) = auth::create_token(&api.store, &name, role, expires.as_deref())
                .map_err(|e| bad(e.to_string()))?;
            Ok(Done {
                status: StatusCode::CREATED,
                message: format!(
                    "created the token {name} ({role}); it is shown only now (stored as a hash)"
                ),
                secret: Some(token),
                expires_at: expires,
            })
        }
        Change::RevokeToken { name } => {
            let n = api.store.revoke_token(&name).map_err(internal)?;
            if n == 0 {
                return Err(not_found(format!("no live token named {name:?}")));
            }
            Ok(done(StatusCode::OK, format!("revoked {n} token(s) {name}")))
        }
        Change::CreateKey {
            name,
            origins,
            rate_limit,
        } => {
            if !(rate_limit >= 0.0 && rate_limit.is_finite()) {
                return Err(bad("rate_limit must be a number ≥ 0 (events per second)"));
            }
            let _lock = KEY_FILE.lock().unwrap_or_else(|e| e.into_inner());
            let mut file = KeyFile::read(&api.data_dir).map_err(internal)?;
            let key = file
                .create(name.trim(), origins, rate_limit)
                .map_err(|e| bad(e.to_string()))?;
            file.write(&api.data_dir).map_err(internal)?;
            Ok(Done {
                status: StatusCode::CREATED,
                message: format!(
                    "created a write key for source {}; it is shown only now (stored as a hash)",
                    name.trim()
                ),
                secret: Some(key),
                expires_at: None,
            })
        }
        Change::RevokeKey { name } => {
            let _lock = KEY_FILE.lock().unwrap_or_else(|e| e.into_inner());
            let mut file = KeyFile::read(&api.data_dir).map_err(internal)?;
            let n = file.revoke(&name);
            if n == 0 {
                return Err(not_found(format!(
                    "no live key of a source or with a prefix {name:?} (keys from the configuration are changed there)"
                )));
            }
            file.write(&api.data_dir).map_err(internal)?;
            Ok(done(
                StatusCode::OK,
                format!("revoked {n} key(s) of {name}; the collector refuses them within seconds"),
            ))
        }
    }
}

/// A change for the log, without its password.
struct Redacted<'c>(&'c Change);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Change::AddUser { name, role, .. } => write!(f, "add user {name} ({role})"),
            Change::UpdateUser {
                name,
                role,
                password,
            } => write!(
                f,
                "update user {name}{}{}",
                role.map_or(String::new(), |r| format!(" role {r}")),
                if password.is_some() { " password" } else { "" }
            ),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Runs `c` on a blocking thread.
async fn run(api: &Arc<Api>, who: Principal, c: Change) -> ApiResult<Done> {
    let api = api.clone();
    tokio::task::spawn_blocking(move || apply(&api, &who, c))
        .await
        .map_err(internal)?
}

fn json_body<T: serde::de::DeserializeOwned>(body: &str, shape: &str) -> ApiResult<T> {
    serde_json::from_str(body).map_err(|e| bad(format!("the body must be {shape}: {e}")))
}

fn answer(d: Done, extra: serde_json::Value) -> Response {
    let mut body = serde_json::json!({ "message": d.message });
    if let (Some(m), serde_json::Value::Object(e)) = (body.as_object_mut(), extra) {
        m.extend(e);
    }
    (d.status, axum::Json(body)).into_response()
}

async fn list_users(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    api.allow(&headers, Role::Admin, false)?;
    let users = api.store.users().map_err(internal)?;
    Ok(axum::Json(serde_json::json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    role: String,
    password: String,
}

async fn add_user(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let who = api.allow(&headers, Role::Admin, true)?;
    let u: NewUser = json_body(
        &body,
        r#"{"name": "...", "role": "viewer|analyst|admin", "password": "..."}"#,
    )?;
    let name = u.name.trim().to_string();
    let change = Change::AddUser {
        name: name.clone(),
        role: parse_role(&u.role)?,
        password: u.password,
    };
    let d = run(&api, who, change).await?;
    Ok(answer(d, serde_json::json!({ "name": name })))
}

#[derive(Deserialize)]
struct UserChange {
    role: Option<String>,
    password: Option<String>,
}

async fn update_user(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let who = api.allow(&headers, Role::Admin, true)?;
    let u: UserChange = json_body(&body, r#"{"role": "...", "password": "..."}"#)?;
    let role = u.role.as_deref().map(parse_role).transpose()?;
    let d = run(
        &api,
        who,
        Change::UpdateUser {
            name,
            role,
            password: u.password,
        },
    )
    .await?;
    Ok(answer(d, serde_json::json!({})))
}

async fn remove_user(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = api.allow(&headers, Role::Admin, true)?;
    let d = run(&api, who, Change::RemoveUser { name }).await?;
    Ok(answer(d, serde_json::json!({})))
}

async fn list_tokens(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    api.allow(&headers, Role::Admin, false)?;
    let tokens = api.store.tokens().map_err(internal)?;
    Ok(axum::Json(serde_json::json!({ "tokens": tokens })).into_response())
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    role: String,
    expires_days: Option<u32>,
}

async fn create_token(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let who = api.allow(&headers, Role::Admin, true)?;
    let t: NewToken = json_body(
        &body,
        r#"{"name": "...", "role": "viewer|analyst|admin", "expires_days": 90}"#,
    )?;
    let name = t.name.trim().to_string();
    let change = Change::CreateToken {
        name: name.clone(),
        role: parse_role(&t.role)?,
        expires_days: t.expires_days,
    };
    let d = run(&api, who, change).await?;
    let extra = serde_json::json!({ "name": name, "token": d.secret, "expires_at": d.expires_at });
    Ok(answer(d, extra))
}

async fn revoke_token(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = api.allow(&headers, Role::Admin, true)?;
    let d = run(&api, who, Change::RevokeToken { name }).await?;
    Ok(answer(d, serde_json::json!({})))
}

/// The key file's keys, and the sources configured outside it.
fn key_listing(api: &Api) -> ApiResult<(KeyFile, Vec<String>)> {
    let file = KeyFile::read(&api.data_dir).map_err(internal)?;
    let configured = api.config.sources.iter().map(|s| s.name.clone()).collect();
    Ok((file, configured))
}

async fn list_keys(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Response> {
    api.allow(&headers, Role::Admin, false)?;
    let (file, configured) = key_listing(&api)?;
    Ok(axum::Json(serde_json::json!({
        "keys": file.keys.iter().map(|k| serde_json::json!({
            "name": k.name,
            "prefix": k.prefix,
            "created_at": k.created_at,
            "revoked_at": k.revoked_at,
            "origins": k.origins,
            "rate_limit": k.rate_limit,
        })).collect::<Vec<_>>(),
        "configured_sources": configured,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct NewKey {
    name: String,
    #[serde(default)]
    origins: Vec<String>,
    #[serde(default)]
    rate_limit: f64,
}

async fn create_key(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Response> {
    let who = api.allow(&headers, Role::Admin, true)?;
    let k: NewKey = json_body(
        &body,
        r#"{"name": "...", "origins": ["https://shop.example"], "rate_limit": 0}"#,
    )?;
    let name = k.name.trim().to_string();
    let change = Change::CreateKey {
        name: name.clone(),
        origins: k.origins,
        rate_limit: k.rate_limit,
    };
    let d = run(&api, who, change).await?;
    let extra = serde_json::json!({ "name": name, "key": d.secret });
    Ok(answer(d, extra))
}

async fn revoke_key(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = api.allow(&headers, Role::Admin, true)?;
    let d = run(&api, who, Change::RevokeKey { name }).await?;
    Ok(answer(d, serde_json::json!({})))
}

async fn admin_page(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Admin)?;
    Ok(render(&api, &who, StatusCode::OK, ""))
}

/// A form's change, from its `action` field.
fn form_change(f: &HashMap<String, String>) -> ApiResult<Change> {
    let field = |k: &str| f.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let name = field("name");
    Ok(match field("action").as_str() {
        "add_user" => Change::AddUser {
            name,
            role: parse_role(&field("role"))?,
            password: f.get("password").cloned().unwrap_or_default(),
        },
        "set_role" => Change::UpdateUser {
            name,
            role: Some(parse_role(&field("role"))?),
            password: None,
        },
        "set_password" => Change::UpdateUser {
            name,
            role: None,
            password: Some(f.get("password").cloned().unwrap_or_default()),
        },
        "remove_user" => Change::RemoveUser { name },
        "create_token" => Change::CreateToken {
            name,
            role: parse_role(&field("role"))?,
            expires_days: match field("expires_days").as_str() {
                "" => None,
                d => Some(
                    d.parse()
                        .map_err(|_| bad(format!("expires in {d:?} days: not a number")))?,
                ),
            },
        },
        "revoke_token" => Change::RevokeToken { name },
        "create_key" => Change::CreateKey {
            name,
            origins: field("origins")
                .split([' ', ','])
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect(),
            rate_limit: match field("rate_limit").as_str() {
                "" => 0.0,
                r => r
                    .parse()
                    .map_err(|_| bad(format!("rate limit {r:?}: not a number")))?,
            },
        },
        "revoke_key" => Change::RevokeKey { name },
        other => return Err(bad(format!("unknown action {other:?}"))),
    })
}

async fn admin_form(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let who = gate(&api, &headers, Role::Admin)?;
    if let Err(d) = who.check_csrf(f.get("csrf").map(String::as_str)) {
        return Ok(render(
            &api,
            &who,
            d.status,
            &notice(false, &d.reason, None),
        ));
    }
    let result = match form_change(&f) {
        Ok(c) => run(&api, who.clone(), c).await,
        Err(e) => Err(e),
    };
    Ok(match result {
        Ok(d) => {
            let msg = notice(true, &d.message, d.secret.as_deref());
            render(&api, &who, StatusCode::OK, &msg)
        }
        Err(e) => render(&api, &who, e.0, &notice(false, &e.1, None)),
    })
}

fn notice(ok: bool, message: &str, secret: Option<&str>) -> String {
    let secret = secret.map_or(String::new(), |s| {
        format!(
            r#"<p>Copy it now: <code id="secret" style="user-select:all">{}</code></p>"#,
            esc(s)
        )
    });
    format!(
        r#"<div class="tile" role="status" id="notice"><div class="{}">{}</div>{secret}</div>"#,
        if ok { "ok" } else { "fail" },
        esc(message)
    )
}

/// A one-button form that posts `action` for `name`.
fn button(csrf: &str, action: &str, name: &str, label: &str, confirm: &str) -> String {
    format!(
        r#"<form method="post" action="/admin" style="display:inline" onsubmit="return confirm('{}')"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="action" value="{action}"><input type="hidden" name="name" value="{}"><button type="submit">{label}</button></form>"#,
        esc(&confirm.replace('\\', "\\\\").replace('\'', "\\'")),
        esc(csrf),
        esc(name)
    )
}

/// A role picker, on `current` (else viewer); `orders` and `metrics` are
/// roles for tokens.
fn role_select(current: Option<Role>, tokens: bool) -> String {
    let mut s = String::from(r#"<select name="role" aria-label="Role">"#);
    let only_tokens = if tokens { &Role::TOKENS[..] } else { &[] };
    for r in Role::ALL.into_iter().chain(only_tokens.iter().copied()) {
        let on = if Some(r) == current { " selected" } else { "" };
        let _ = write!(s, r#"<option value="{r}"{on}>{r}</option>"#);
    }
    s + "</select>"
}

fn render(api: &Api, who: &Principal, status: StatusCode, notice: &str) -> Response {
    let csrf = match &who.via {
        Via::Session { csrf, .. } => csrf.as_str(),
        Via::Token => "",
    };
    let hidden = |action: &str| {
        format!(
            r#"<input type="hidden" name="csrf" value="{}"><input type="hidden" name="action" value="{action}">"#,
            esc(csrf)
        )
    };
    let mut body = String::from(notice);
    let now = shoplake_jobs::store::now_rfc3339();

    // users
    let users = api.store.users().unwrap_or_default();
    let mut t = String::from(
        r#"<div class="tablewrap"><table id="users"><thead><tr><th>name</th><th>role</th><th>created</th><th>password changed</th><th></th></tr></thead><tbody>"#,
    );
    for u in &users {
        let _ = write!(
            t,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method="post" action="/admin" style="display:inline">{}<input type="hidden" name="name" value="{}">{}<button type="submit">Set role</button></form> {}</td></tr>"#,
            esc(&u.name),
            u.role,
            esc(&u.created_at),
            esc(&u.changed_at),
            hidden("set_role"),
            esc(&u.name),
            role_select(Some(u.role), false),
            button(
                csrf,
                "remove_user",
                &u.name,
                "Remove",
                &format!("Remove {}?", u.name)
            )
        );
    }
    t.push_str("</tbody></table></div>");
    let _ = write!(
        body,
        r#"<h2>Users</h2>{t}<form method="post" action="/admin" class="range" id="add-user">{}<label>Name<input name="name" required autocomplete="off"></label><label>Password (8+)<input type="password" name="password" minlength="8" required autocomplete="new-password"></label><label>Role{}</label><button type="submit">Add user</button></form>
<form method="post" action="/admin" class="range">{}<label>User<input name="name" required autocomplete="off"></label><label>New password<input type="password" name="password" minlength="8" required autocomplete="new-password"></label><button type="submit">Set password</button></form>"#,
        hidden("add_user"),
        role_select(None, false),
        hidden("set_password")
    );

    // tokens
    let tokens = api.store.tokens().unwrap_or_default();
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.role.to_string(),
                format!("{}…", t.prefix),
                t.created_at.clone(),
                t.expires_at.clone().unwrap_or_else(|| "never".into()),
                t.last_used_at.clone().unwrap_or_default(),
                if t.is_live(&now) {
                    "live".into()
                } else if t.revoked_at.is_some() {
                    "revoked".into()
                } else {
                    "expired".into()
                },
            ]
        })
        .collect();
    let live: Vec<&str> = tokens
        .iter()
        .filter(|t| t.is_live(&now))
        .map(|t| t.name.as_str())
        .collect();
    let _ = write!(
        body,
        r#"<h2>API tokens</h2>{}<p>{}</p><form method="post" action="/admin" class="range" id="create-token">{}<label>Name<input name="name" required autocomplete="off"></label><label>Role{}</label><label>Expires in (days)<input name="expires_days" inputmode="numeric" placeholder="never"></label><button type="submit">Create token</button></form>"#,
        table(
            "tokens",
            &[
                "name",
                "role",
                "token",
                "created",
                "expires",
                "last used",
                "state"
            ],
            &rows
        ),
        live.iter()
            .map(|n| button(
                csrf,
                "revoke_token",
                n,
                &format!("Revoke {n}"),
                &format!("Revoke the token {n}?")
            ))
            .collect::<Vec<_>>()
            .join(" "),
        hidden("create_token"),
        role_select(None, true)
    );

    // write keys
    let (file, configured) = key_listing(api).unwrap_or_default();
    let rows: Vec<Vec<String>> = file.keys.iter().map(|k| k.listing_row()).collect();
    let mut live: Vec<&str> = file
        .keys
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| k.name.as_str())
        .collect();
    live.sort_unstable();
    live.dedup();
    let _ = write!(
        body,
        r#"<h2>Write keys</h2><p class="muted">What storefronts and SDKs send with their events (Segment writeKey, PostHog api_key, GA4 api_secret).{}</p>{}<p>{}</p><form method="post" action="/admin" class="range" id="create-key">{}<label>Source<input name="name" required autocomplete="off" pattern="[A-Za-z0-9._-]{{1,64}}"></label><label>Allowed origins<input name="origins" placeholder="https://shop.example (any)"></label><label>Events/s<input name="rate_limit" inputmode="decimal" placeholder="no limit"></label><button type="submit">Create key</button></form>"#,
        if configured.is_empty() {
            String::new()
        } else {
            format!(
                " Sources from the configuration, changed there: {}.",
                esc(&configured.join(", "))
            )
        },
        table(
            "keys",
            &["source", "key", "created", "revoked", "origins", "events/s"],
            &rows
        ),
        live.iter()
            .map(|n| button(
                csrf,
                "revoke_key",
                n,
                &format!("Revoke {n}"),
                &format!("Revoke every key of {n}? Its senders are refused within seconds.")
            ))
            .collect::<Vec<_>>()
            .join(" "),
        hidden("create_key")
    );
    (status, Html(page("Admin", "/admin", who, None, &body))).into_response()
}
