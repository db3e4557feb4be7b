//! shoplake's PostgreSQL wire-protocol endpoint: `psql`, Grafana, Metabase,
//! Superset, Tableau and every PostgreSQL driver query the lake directly.
//!
//! Built on `datafusion-postgres` (the pgwire protocol, `pg_catalog` and
//! `information_schema` emulation over DataFusion), with shoplake's rules
//! around it:
//!
//! - **Database `shoplake`**: the lake's catalog, one schema per zone
//!   (`raw`, `processed`, `curated`, `quarantine`); `curated` is the default.
//! - **Passwords of shoplake's users** (`shoplake users add`), checked by the
//!   [`Authenticator`] the server hands in; only analysts and admins get in.
//! - **Read-only**: only queries, `EXPLAIN` of a query, `SHOW`, cursors and
//!   transaction brackets run; anything else is refused with SQLSTATE
//!   `25006` (read-only transaction) before it is planned. `SET` changes only
//!   the connection's own client settings, never the shared engine.
//! - **Bounded**: every answer is cut off with SQLSTATE `57014` once the
//!   query has run for the configured time, however the client reads it;
//!   memory is bounded by the engine's memory pool.

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::{Sink, StreamExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::portal::Portal;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireConnectionState,
    PgWireServerHandlers, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The database name clients connect to.
pub const DATABASE: &str = "shoplake";

/// Checks who connects. The server implements it over its user store.
#[async_trait]
pub trait Authenticator: Send + Sync + Debug + 'static {
    /// `Ok(())` when `user` with `password`, connecting from `peer`, may
    /// query the lake; otherwise why not (said to the client as it is, so it
    /// must not tell a wrong password from an unknown user).
    async fn authenticate(&self, user: &str, password: &str, peer: IpAddr) -> Result<(), Refusal>;
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user or wrong password.
    BadPassword,
    /// The user exists but their role may not query (viewers).
    NotAllowed(String),
    /// Too many failed logins: try again later.
    Throttled(u64),
}

/// Limits of the endpoint.
#[derive(Clone)]
pub struct PgOptions {
    /// A query's answer is cut off after this long.
    pub timeout: Duration,
    /// Connections served at once (more are refused with SQLSTATE 53300).
    pub max_connections: usize,
    /// TLS for clients that ask for it (`sslmode=require`); when set, a
    /// login without TLS is refused before the password is sent.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            timeout: Duration::from_secs(300),
            max_connections: 64,
            tls: None,
        }
    }
}

/// Readies `ctx` (a session over the lake, of its own: the endpoint adds
/// `pg_catalog` and PostgreSQL's functions to it) for PostgreSQL clients.
pub fn prepare(ctx: &SessionContext) -> Result<(), String> {
    setup_pg_catalog(ctx, DATABASE, EmptyContextProvider).map_err(|e| e.to_string())?;
    ctx.register_udf(current_setting());
    Ok(())
}

/// The server settings clients read with `current_setting(name)` (Grafana's
/// table picker reads `search_path`; drivers read the version).
const SETTINGS: &[(&str, &str)] = &[
    ("search_path", "curated"),
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("timezone", "UTC"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("max_identifier_length", "63"),
    ("default_transaction_read_only", "on"),
    ("transaction_read_only", "on"),
    ("is_superuser", "off"),
];

/// PostgreSQL's `current_setting(name)`: a known setting's value, else
/// `42704 unrecognized configuration parameter`, as PostgreSQL answers.
fn current_setting() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::{DataFusionError, ScalarValue};
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    let lookup = |name: &str| -> datafusion::common::Result<String> {
        SETTINGS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "unrecognized configuration parameter \"{name}\""
                ))
            })
    };
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| match &args[0] {
            ColumnarValue::Scalar(v) => match v {
                ScalarValue::Utf8(Some(name)) | ScalarValue::LargeUtf8(Some(name)) => Ok(
                    ColumnarValue::Scalar(ScalarValue::Utf8(Some(lookup(name)?))),
                ),
                _ => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
            },
            ColumnarValue::Array(a) => {
                let names = a.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                    DataFusionError::Execution("current_setting takes a text argument".into())
                })?;
                let values = (0..names.len())
                    .map(|i| match names.is_null(i) {
                        true => Ok(None),
                        false => lookup(names.value(i)).map(Some),
                    })
                    .collect::<datafusion::common::Result<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
        }),
    )
}

/// Serves PostgreSQL clients on `listener` until `shutdown` resolves. `ctx`
/// must have gone through [`prepare`].
pub async fn serve(
    listener: TcpListener,
    ctx: SessionContext,
    auth: Arc<dyn Authenticator>,
    opts: PgOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    let handlers = Arc::new(Handlers::new(ctx, auth, &opts));
    let limiter = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "postgres endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let handlers = handlers.clone();
        let limiter = limiter.clone();
        let tls = opts.tls.clone();
        tokio::spawn(async move {
            let Ok(_permit) = limiter.try_acquire_owned() else {
                tracing::warn!(%peer, "postgres endpoint: too many connections, refused");
                refuse_busy(socket).await;
                return;
            };
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, error = %e, "postgres connection ended with an error");
            }
        });
    }
}

/// Answers a connection past the limit with PostgreSQL's own error
/// (`53300 too_many_connections`) once it has sent its startup message.
async fn refuse_busy(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await;
    // an SSLRequest gets "N" first, then the startup message follows
    if buf[..8] == [0, 0, 0, 8, 4, 210, 22, 47] {
        let _ = socket.write_all(b"N").await;
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await;
    }
    let msg = "sorry, too many clients already";
    let mut body = Vec::new();
    for (code, value) in [(b'S', "FATAL"), (b'C', "53300"), (b'M', msg)] {
        body.push(code);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    let _ = socket.write_all(&out).await;
}

struct Handlers {
    queries: Arc<Bounded>,
    startup: Arc<PasswordStartup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    fn new(ctx: SessionContext, auth: Arc<dyn Authenticator>, opts: &PgOptions) -> Handlers {
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnly),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let inner = Arc::new(DfSessionService::new_with_hooks(Arc::new(ctx), hooks));
        let connections = Arc::new(ConnectionManager::new());
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = format!("16.6 (shoplake {})", env!("CARGO_PKG_VERSION"));
        params.is_superuser = false;
        params.default_transaction_read_only = true;
        params.search_path = "curated".into();
        Handlers {
            queries: Arc::new(Bounded {
                parser: Arc::new(Screened(inner.query_parser())),
                inner,
                timeout: opts.timeout,
            }),
            startup: Arc::new(PasswordStartup {
                auth,
                require_tls: opts.tls.is_some(),
                params,
                keys: RandomPidSecretKeyGenerator::default(),
                connections: connections.clone(),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        tracing::debug!(peer = %client.socket_addr(), error = %error, "postgres query failed");
    }
}

fn error(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_string(),
        code.to_string(),
        message.into(),
    )))
}

// ---------------------------------------------------------------------------
// Login: cleartext password (the only method that can check argon2 hashes;
// use TLS or a private network), database `shoplake`.

struct PasswordStartup {
    auth: Arc<dyn Authenticator>,
    /// Refuse logins over plain TCP (the password would cross in clear).
    require_tls: bool,
    params: DefaultServerParameterProvider,
    keys: RandomPidSecretKeyGenerator,
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl StartupHandler for PasswordStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.require_tls && !client.is_secure() {
                    return Err(error(
                        "FATAL",
                        "28000",
                        "this server takes logins over TLS only: connect with sslmode=require",
                    ));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let login = LoginInfo::from_client_info(client);
                let Some(user) = login.user().filter(|u| !u.is_empty()) else {
                    return Err(error("FATAL", "28000", "no user name given"));
                };
                // libpq's default database is the user's name
                let database = login.database().unwrap_or(user);
                if database != DATABASE {
                    return Err(error(
                        "FATAL",
                        "3D000",
                        format!(
                            "database \"{database}\" does not exist (shoplake serves one database, \"{DATABASE}\")"
                        ),
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let user = LoginInfo::from_client_info(client)
                    .user()
                    .unwrap_or_default()
                    .to_string();
                let peer = client.socket_addr().ip();
                match self.auth.authenticate(&user, &pwd.password, peer).await {
                    Ok(()) => {}
                    Err(Refusal::BadPassword) => {
                        tracing::warn!(%user, %peer, "postgres endpoint: failed login");
                        return Err(error(
                            "FATAL",
                            "28P01",
                            format!("password authentication failed for user \"{user}\""),
                        ));
                    }
                    Err(Refusal::NotAllowed(why)) => {
                        return Err(error("FATAL", "28000", why));
                    }
                    Err(Refusal::Throttled(secs)) => {
                        return Err(error(
                            "FATAL",
                            "28P01",
                            format!("too many failed logins: try again in {secs} s"),
                        ));
                    }
                }
                let (pid, secret) = self.keys.generate(client);
                client.set_pid_and_secret_key(pid, secret.clone());
                // lets a client cancel its query (psql's Ctrl-C)
                let (handle, guard) = self.connections.register(pid, secret);
                client
                    .session_extensions()
                    .insert::<Arc<pgwire::api::ConnectionHandle>>(handle);
                client
                    .session_extensions()
                    .insert::<pgwire::api::ConnectionGuard>(guard);
                tracing::info!(%user, %peer, "postgres endpoint: logged in");
                finish_authentication(client, &self.params).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Read-only: the statement kinds that run; everything else is refused.

/// `SET` parameters a client may change: they live in the connection's
/// metadata (`datafusion-postgres` keeps them there), not in the engine.
const CLIENT_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

/// What the endpoint does with a statement.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Runs (by DataFusion or one of the protocol hooks).
    Run,
    /// `SET` of a setting with no meaning here: acknowledged, changes nothing
    /// (PostgreSQL drivers send several at connect time).
    IgnoreSet,
    /// Refused with this SQLSTATE and reason.
    Refuse(&'static str, String),
}

fn verdict(statement: &Statement) -> Verdict {
    match statement {
        Statement::Query(_)
        | Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowFunctions { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Verdict::Run,
        Statement::Explain { statement, .. } => match verdict(statement) {
            Verdict::Run if matches!(**statement, Statement::Query(_)) => Verdict::Run,
            _ => Verdict::Refuse(
                "25006",
                "only a query can be explained here: shoplake's PostgreSQL endpoint is read-only"
                    .into(),
            ),
        },
        Statement::Set(set) => set_verdict(set),
        other => Verdict::Refuse(
            "25006",
            format!(
                "shoplake's PostgreSQL endpoint is read-only: it runs queries (SELECT, WITH, EXPLAIN, SHOW), not {}",
                statement_kind(other)
            ),
        ),
    }
}

fn set_verdict(set: &Set) -> Verdict {
    match set {
        Set::SingleAssignment {
            scope: None,
            hivevar: false,
            variable,
            ..
        } => {
            let name = variable.to_string().to_ascii_lowercase();
            if CLIENT_SETTINGS.contains(&name.as_str()) {
                Verdict::Run
            } else if name.starts_with("datafusion.") {
                Verdict::Refuse(
                    "42501",
                    format!(
                        "{name} is a setting of the engine every connection shares: it cannot be changed from here"
                    ),
                )
            } else {
                Verdict::IgnoreSet
            }
        }
        // the hook keeps the zone in the connection's metadata
        Set::SetTimeZone { local: false, .. } => Verdict::Run,
        _ => Verdict::IgnoreSet,
    }
}

/// The first words of a statement, to name it in an error.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    let first = words.first().copied().unwrap_or("this statement");
    match first.to_ascii_uppercase().as_str() {
        "CREATE" | "DROP" | "ALTER" | "TRUNCATE" => words.join(" ").to_ascii_uppercase(),
        other => other.to_string(),
    }
}

/// The first hook: decides before the others and before DataFusion plans;
/// then what a query plans to must pass the SQL API's second layer
/// ([`shoplake_query::guard::reads_only`], with `pg_catalog` besides).
struct ReadOnly;

impl ReadOnly {
    fn check(statement: &Statement) -> Option<PgWireResult<Response>> {
        match verdict(statement) {
            Verdict::Run => None,
            Verdict::IgnoreSet => {
                tracing::debug!(%statement, "postgres endpoint: SET ignored");
                Some(Ok(Response::Execution(Tag::new("SET"))))
            }
            Verdict::Refuse(code, why) => Some(Err(error("ERROR", code, why))),
        }
    }

    /// The plan's walk: an error when it does more than read.
    fn walk(plan: &LogicalPlan) -> Option<PgWireError> {
        let pg_catalog = |r: &datafusion::common::TableReference| {
            r.schema()
                .is_some_and(|s| s.eq_ignore_ascii_case("pg_catalog"))
        };
        shoplake_query::guard::reads_only_and(plan, pg_catalog)
            .err()
            .map(|why| {
                error(
                    "ERROR",
                    "25006",
                    format!(
                        "shoplake's PostgreSQL endpoint is read-only: the query's plan holds {why}"
                    ),
                )
            })
    }
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(answer) = ReadOnly::check(statement) {
            return Some(answer);
        }
        if !matches!(statement, Statement::Query(_) | Statement::Explain { .. }) {
            return None;
        }
        // planned once more here, for the walk (a plan this cannot build
        // is left to the service, which says what is wrong with it)
        let plan = ctx
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement.clone(),
            )))
            .await
            .ok()?;
        ReadOnly::walk(&plan).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match verdict(statement) {
            Verdict::Run => None,
            // planned as an empty statement; answered at execution below
            Verdict::IgnoreSet => Some(Ok(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                },
            ))),
            Verdict::Refuse(code, why) => Some(Err(error("ERROR", code, why))),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        ReadOnly::check(statement).or_else(|| ReadOnly::walk(plan).map(Err))
    }
}

// ---------------------------------------------------------------------------
// Bounded: every answer's rows stop at the deadline.

struct Bounded {
    inner: Arc<DfSessionService>,
    /// The service's parser behind the screen (made once, not per `Parse`).
    parser: Arc<Screened>,
    timeout: Duration,
}

/// Gives DataFusion's errors PostgreSQL's SQLSTATEs where they have one
/// (clients show them, and some act on them), instead of `XX000`.
fn classify(e: PgWireError) -> PgWireError {
    let PgWireError::ApiError(inner) = &e else {
        return e;
    };
    let msg = inner.to_string();
    let lower = msg.to_ascii_lowercase();
    let code = if lower.contains("parsererror") || lower.contains("sql parser error") {
        "42601"
    } else if lower.contains("table") && lower.contains("not found") {
        "42P01"
    } else if lower.contains("no field named") {
        "42703"
    } else if lower.contains("invalid function")
        || lower.contains("function") && lower.contains("not found")
    {
        "42883"
    } else if lower.contains("resources exhausted") {
        "53200"
    } else if lower.contains("unrecognized configuration parameter") {
        "42704"
    } else if lower.contains("division by zero") || lower.contains("divide by zero") {
        "22012"
    } else if lower.contains("error during planning") || lower.contains("schema error") {
        "42000"
    } else {
        return e;
    };
    error("ERROR", code, msg)
}

impl Bounded {
    /// `call` (planning and starting a query) within the timeout, its
    /// errors given PostgreSQL's SQLSTATEs.
    async fn within<T>(&self, call: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                error(
                    "ERROR",
                    "57014",
                    "canceling statement due to statement timeout",
                )
            })?
            .map_err(classify)
    }

    fn bound(&self, response: Response, cancel: Option<Cancel>) -> Response {
        match response {
            Response::Query(q) => Response::Query(with_deadline(q, self.timeout, cancel)),
            other => other,
        }
    }
}

/// The connection's cancel signal (`pg_cancel_backend`, psql's Ctrl-C), as
/// pgwire keeps it.
type Cancel = Arc<Arc<pgwire::api::ConnectionHandle>>;

/// What ended a wait for the next row.
enum Woke {
    Row(Result<Option<PgWireResult<pgwire::messages::data::DataRow>>, tokio::time::error::Elapsed>),
    /// The client's cancel request (true), or a signal that can no longer
    /// come (false).
    Cancel(bool),
}

/// `q`'s rows until `limit` has passed or the client cancels. pgwire races
/// the cancel signal against planning only, and a query's work happens
/// while its rows stream: from its first row on the signal is this
/// stream's (dropping DataFusion's stream stops the query).
fn with_deadline(mut q: QueryResponse, limit: Duration, cancel: Option<Cancel>) -> QueryResponse {
    struct State {
        rows: pgwire::api::results::SendableRowStream,
        handle: Option<Cancel>,
        cancel: Option<futures::channel::oneshot::Receiver<()>>,
    }
    let deadline = tokio::time::Instant::now() + limit;
    let rows = std::mem::replace(&mut q.data_rows, Box::pin(futures::stream::empty()));
    let state = State {
        rows,
        handle: cancel,
        cancel: None,
    };
    let bounded = futures::stream::unfold(Some(state), move |state| async move {
        let mut st = state?;
        if let Some(handle) = st.handle.take() {
            st.cancel = Some(handle.start_query().await);
        }
        loop {
            let woke = match st.cancel.as_mut() {
                Some(rx) => tokio::select! {
                    biased;
                    c = rx => Woke::Cancel(c.is_ok()),
                    r = tokio::time::timeout_at(deadline, st.rows.next()) => Woke::Row(r),
                },
                None => Woke::Row(tokio::time::timeout_at(deadline, st.rows.next()).await),
            };
            return match woke {
                Woke::Cancel(false) => {
                    st.cancel = None;
                    continue;
                }
                Woke::Cancel(true) => Some((
                    Err(error(
                        "ERROR",
                        "57014",
                        "canceling statement due to user request",
                    )),
                    None,
                )),
                Woke::Row(Ok(Some(row))) => Some((row.map_err(classify), Some(st))),
                Woke::Row(Ok(None)) => None,
                Woke::Row(Err(_)) => Some((
                    Err(error(
                        "ERROR",
                        "57014",
                        format!(
                            "canceling statement due to statement timeout (shoplake's query.timeout_secs = {})",
                            limit.as_secs()
                        ),
                    )),
                    None,
                )),
            };
        }
    });
    q.data_rows = Box::pin(bounded);
    q
}

#[async_trait]
impl SimpleQueryHandler for Bounded {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        screened(query)?;
        let responses = self
            .within(SimpleQueryHandler::do_query(&*self.inner, client, query))
            .await?;
        let cancel = cancel_signal(client);
        Ok(responses
            .into_iter()
            .map(|r| self.bound(r, cancel.clone()))
            .collect())
    }
}

/// Refuses, before any parser sees it, SQL whose parse alone could take
/// hours (see [`shoplake_query::guard::screen`]).
fn screened(sql: &str) -> PgWireResult<()> {
    shoplake_query::guard::screen(sql, true).map_err(|why| error("ERROR", "54001", why))
}

/// The connection's cancel signal, where pgwire keeps it.
fn cancel_signal<C: ClientInfo>(client: &C) -> Option<Cancel> {
    client
        .session_extensions()
        .get::<Arc<pgwire::api::ConnectionHandle>>()
}

/// The service's parser behind [`shoplake_query::guard::screen`], for the
/// extended protocol's `Parse` (simple queries are screened in
/// [`Bounded`]'s `do_query`).
struct Screened(Arc<<DfSessionService as ExtendedQueryHandler>::QueryParser>);

#[async_trait]
impl QueryParser for Screened {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<pgwire::api::Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        screened(sql)?;
        self.0.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<pgwire::api::Type>> {
        self.0.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&pgwire::api::portal::Format>,
    ) -> PgWireResult<Vec<pgwire::api::results::FieldInfo>> {
        self.0.get_result_schema(stmt, column_format)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Bounded {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Screened;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let response = self
            .within(ExtendedQueryHandler::do_query(
                &*self.inner,
                client,
                portal,
                max_rows,
            ))
            .await?;
        let cancel = cancel_signal(client);
        Ok(self.bound(response, cancel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    fn judge(sql: &str) -> Verdict {
        let parsed = PostgresCompatibilityParser::new().parse(sql).unwrap();
        verdict(&parsed[0])
    }

    fn refused(sql: &str) -> bool {
        matches!(judge(sql), Verdict::Refuse(..))
    }

    #[test]
    fn queries_explains_shows_and_cursors_run() {
        for sql in [
            "SELECT 1",
            "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
            "SELECT * FROM curated.daily_kpis ORDER BY date DESC LIMIT 5",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW search_path",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH 10 FROM c",
            "CLOSE c",
            "SET statement_timeout = 5000",
            "SET application_name = 'grafana'",
            "SET TIME ZONE 'UTC'",
        ] {
            assert_eq!(judge(sql), Verdict::Run, "{sql}");
        }
    }

    #[test]
    fn writes_ddl_copy_and_engine_settings_are_refused() {
        for sql in [
            "CREATE TABLE t (a INT)",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc'",
            "CREATE VIEW v AS SELECT 1",
            "DROP TABLE curated.daily_kpis",
            "INSERT INTO curated.daily_kpis SELECT * FROM curated.daily_kpis",
            "DELETE FROM curated.daily_kpis",
            "UPDATE curated.daily_kpis SET orders = 0",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
            "EXPLAIN CREATE TABLE t (a INT)",
            "SET datafusion.runtime.memory_limit = '100G'",
            "SET datafusion.execution.target_partitions = 1000",
        ] {
            assert!(refused(sql), "{sql} was not refused");
        }
        let Verdict::Refuse(code, why) = judge("DROP TABLE curated.daily_kpis") else {
            unreachable!()
        };
        assert_eq!(code, "25006");
        assert!(
            why.contains("read-only") && why.contains("DROP TABLE"),
            "{why}"
        );
    }

    #[test]
    fn driver_settings_are_acknowledged_without_effect() {
        for sql in [
            "SET extra_float_digits = 3",
            "SET client_min_messages = warning",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        ] {
            assert!(!refused(sql), "{sql} was refused");
        }
        assert_eq!(
            judge("SET client_min_messages = warning"),
            Verdict::IgnoreSet
        );
    }

    #[test]
    fn the_walk_of_a_plan_refuses_tables_outside_the_lake_and_pg_catalog() {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::datasource::MemTable;
        use datafusion::datasource::provider_as_source;
        use datafusion::logical_expr::LogicalPlanBuilder;

        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let table = provider_as_source(Arc::new(MemTable::try_new(schema, vec![vec![]]).unwrap()));
        let scan = |name: &str| {
            LogicalPlanBuilder::scan(name, table.clone(), None)
                .unwrap()
                .build()
                .unwrap()
        };
        for name in ["secret", "public.secret", "datafusion.public.x"] {
            let e = ReadOnly::walk(&scan(name)).unwrap_or_else(|| panic!("{name} let through"));
            assert!(e.to_string().contains("25006"), "{e}");
        }
        for name in [
            "pg_catalog.pg_class",
            "curated.daily_kpis",
            "information_schema.tables",
        ] {
            assert!(ReadOnly::walk(&scan(name)).is_none(), "{name} refused");
        }
    }
}
