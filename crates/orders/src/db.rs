//! A thin layer over the two sqlx backends, so that the store's logic is
//! written once: statements use `$1, $2, ...` placeholders, which SQLite
//! (through sqlx) and PostgreSQL both accept, arguments are a small enum, and
//! rows are read by column index. Where the SQL differs, the caller picks it
//! with [`Kind`].

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Postgres, Row as _, SqlSafeStr, Sqlite, Transaction};

/// Which database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// The connection pools.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    /// SQLite: one connection writes (writers queue in the pool, not in
    /// SQLite's busy loop), several read (WAL readers never block).
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// A statement argument. The array variants are for PostgreSQL only (a
/// SQLite statement given one fails).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    OptText(Option<&'a str>),
    /// `BIGINT[]`
    Ints(&'a [i64]),
    /// `TEXT[]`
    Texts(&'a [&'a str]),
    /// `TEXT[]` with `NULL`s
    OptTexts(&'a [Option<&'a str>]),
}

/// An open transaction.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A result row.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// Binds `$args` to `$query`; on SQLite an array argument makes the
/// enclosing function return an error.
macro_rules! bind_all {
    (sqlite: $query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match *arg {
                Arg::Int(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::OptText(v) => q.bind(v),
                Arg::Ints(_) | Arg::Texts(_) | Arg::OptTexts(_) => {
                    return Err(sqlx::Error::Protocol(
                        "internal error: an array argument in a SQLite statement".into(),
                    ));
                }
            };
        }
        q
    }};
    (postgres: $query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match *arg {
                Arg::Int(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::OptText(v) => q.bind(v),
                Arg::Ints(v) => q.bind(v),
                Arg::Texts(v) => q.bind(v),
                Arg::OptTexts(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Wraps SQL assembled by this crate from fixed fragments (never from input).
pub(crate) fn assembled(sql: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(sql)
}

impl Db {
    pub fn kind(&self) -> Kind {
        match self {
            Db::Sqlite { .. } => Kind::Sqlite,
            Db::Postgres(_) => Kind::Postgres,
        }
    }

    /// A transaction that will write. SQLite takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a read-then-write can never fail to upgrade;
    /// PostgreSQL runs READ COMMITTED and locks rows as it goes.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A read-only transaction with one snapshot for all its statements.
    pub async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite { read, .. } => Tx::Sqlite(read.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?,
            ),
        })
    }

    /// Runs one query outside a transaction and returns every row.
    pub async fn fetch_all(
        &self,
        sql: impl SqlSafeStr,
        args: &[Arg<'_>],
    ) -> Result<Vec<Row>, sqlx::Error> {
        Ok(match self {
            Db::Sqlite { read, .. } => bind_all!(sqlite: sqlx::query(sql), args)
                .fetch_all(read)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Db::Postgres(pool) => bind_all!(postgres: sqlx::query(sql), args)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { write, read } => {
                write.close().await;
                read.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx {
    pub fn kind(&self) -> Kind {
        match self {
            Tx::Sqlite(_) => Kind::Sqlite,
            Tx::Postgres(_) => Kind::Postgres,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(
        &mut self,
        sql: impl SqlSafeStr,
        args: &[Arg<'_>],
    ) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Tx::Sqlite(tx) => bind_all!(sqlite: sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Postgres(tx) => bind_all!(postgres: sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    /// Runs a statement assembled for one use (a multi-row `INSERT` of a
    /// given size) without keeping it prepared; returns the rows changed.
    pub async fn execute_once(
        &mut self,
        sql: String,
        args: &[Arg<'_>],
    ) -> Result<u64, sqlx::Error> {
        let sql = assembled(sql);
        Ok(match self {
            Tx::Sqlite(tx) => bind_all!(sqlite: sqlx::query(sql).persistent(false), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Postgres(tx) => bind_all!(postgres: sqlx::query(sql).persistent(false), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    /// [`fetch_all`](Self::fetch_all) of a statement assembled for one use.
    pub async fn fetch_all_once(
        &mut self,
        sql: String,
        args: &[Arg<'_>],
    ) -> Result<Vec<Row>, sqlx::Error> {
        let sql = assembled(sql);
        Ok(match self {
            Tx::Sqlite(tx) => bind_all!(sqlite: sqlx::query(sql).persistent(false), args)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Tx::Postgres(tx) => bind_all!(postgres: sqlx::query(sql).persistent(false), args)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    /// Runs several statements separated by `;`, without arguments.
    pub async fn execute_script(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => _ = sqlx::raw_sql(sql).execute(&mut **tx).await?,
            Tx::Postgres(tx) => _ = sqlx::raw_sql(sql).execute(&mut **tx).await?,
        }
        Ok(())
    }

    pub async fn fetch_optional(
        &mut self,
        sql: impl SqlSafeStr,
        args: &[Arg<'_>],
    ) -> Result<Option<Row>, sqlx::Error> {
        Ok(match self {
            Tx::Sqlite(tx) => bind_all!(sqlite: sqlx::query(sql), args)
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Sqlite),
            Tx::Postgres(tx) => bind_all!(postgres: sqlx::query(sql), args)
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Postgres),
        })
    }

    pub async fn fetch_all(
        &mut self,
        sql: impl SqlSafeStr,
        args: &[Arg<'_>],
    ) -> Result<Vec<Row>, sqlx::Error> {
        Ok(match self {
            Tx::Sqlite(tx) => bind_all!(sqlite: sqlx::query(sql), args)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Tx::Postgres(tx) => bind_all!(postgres: sqlx::query(sql), args)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await,
            Tx::Postgres(tx) => tx.rollback().await,
        }
    }
}

impl Row {
    pub fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(i),
            Row::Postgres(r) => r.try_get(i),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(i),
            Row::Postgres(r) => r.try_get(i),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(i),
            Row::Postgres(r) => r.try_get(i),
        }
    }
}
