//! One SQL surface over both backends: the store's reads and op bodies
//! are written once, against [`Sql`], and run on SQLite or PostgreSQL.
//!
//! Owns the translation between the two: parameters ([`Param`], a closed
//! list of types both drivers bind the same way), column decoding
//! ([`Column`]), placeholders (SQL is written with SQLite's `?N`, which
//! PostgreSQL gets as `$N`) and each driver's errors. It knows no table:
//! the SQL text and where the dialects differ (a pragma, `INDEXED BY`, a
//! row lock) stay with the code that writes it, asked through
//! [`Sql::dialect`].

use std::cell::RefCell;
use std::collections::HashMap;

use super::{Error, Result};

/// Which database a statement goes to, for the few places whose SQL
/// differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value both drivers bind alike. The list is closed on purpose: a
/// `u32` binds on SQLite but is an OID to PostgreSQL, so widening to
/// `i64` is left to the caller, where a compile error points at it.
pub trait Param: rusqlite::ToSql + postgres::types::ToSql + Sync {}

impl Param for i64 {}
impl Param for bool {}
impl Param for f64 {}
impl Param for String {}
impl Param for &str {}
impl Param for Option<i64> {}
impl Param for Option<bool> {}
impl Param for Option<String> {}
impl Param for Option<&str> {}
impl Param for Option<&String> {}
impl<T: Param> Param for &T {}

/// An owned parameter, for SQL built at run time with a varying list
/// (the list queries).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Bool(bool),
    Text(String),
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Value::Integer(value) => value.to_sql(),
            Value::Bool(value) => value.to_sql(),
            Value::Text(value) => value.to_sql(),
        }
    }
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        match self {
            Value::Integer(value) => value.to_sql(ty, out),
            Value::Bool(value) => value.to_sql(ty, out),
            Value::Text(value) => value.to_sql(ty, out),
        }
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        <i64 as postgres::types::ToSql>::accepts(ty)
            || <bool as postgres::types::ToSql>::accepts(ty)
            || <String as postgres::types::ToSql>::accepts(ty)
    }

    postgres::types::to_sql_checked!();
}

impl Param for Value {}

/// The parameters of one statement, as `&[&dyn Param]`.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::sql::Param]
    };
    ($($param:expr),+ $(,)?) => {
        &[$(&$param as &dyn $crate::store::sql::Param),+] as &[&dyn $crate::store::sql::Param]
    };
}
pub(crate) use params;

/// A column value both drivers decode alike. Unsigned counts are read as
/// `i64` and checked, since PostgreSQL has no unsigned type.
pub trait Column: Sized {
    fn sqlite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self>;
    fn postgres(row: &postgres::Row, index: usize) -> Result<Self>;
}

macro_rules! column_as_is {
    ($($type:ty),+) => {$(
        impl Column for $type {
            fn sqlite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self> {
                Ok(row.get(index)?)
            }
            fn postgres(row: &postgres::Row, index: usize) -> Result<Self> {
                Ok(row.try_get(index)?)
            }
        }
    )+};
}
column_as_is!(i64, f64, String, Option<i64>, Option<String>);

macro_rules! column_unsigned {
    ($($type:ty),+) => {$(
        impl Column for $type {
            fn sqlite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self> {
                Ok(row.get(index)?)
            }
            fn postgres(row: &postgres::Row, index: usize) -> Result<Self> {
                let value: i64 = row.try_get(index)?;
                <$type>::try_from(value).map_err(|_| {
                    Error::Sqlite(format!("column {index} holds {value}, out of range"))
                })
            }
        }
        impl Column for Option<$type> {
            fn sqlite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self> {
                Ok(row.get(index)?)
            }
            fn postgres(row: &postgres::Row, index: usize) -> Result<Self> {
                let value: Option<i64> = row.try_get(index)?;
                value
                    .map(|value| {
                        <$type>::try_from(value).map_err(|_| {
                            Error::Sqlite(format!("column {index} holds {value}, out of range"))
                        })
                    })
                    .transpose()
            }
        }
    )+};
}
column_unsigned!(u32, u64, u16);

impl Column for bool {
    fn sqlite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self> {
        Ok(row.get(index)?)
    }
    fn postgres(row: &postgres::Row, index: usize) -> Result<Self> {
        // A flag column is BOOLEAN; an expression over counts may be an
        // integer, as on SQLite.
        if row.columns()[index].type_() == &postgres::types::Type::BOOL {
            Ok(row.try_get(index)?)
        } else {
            Ok(row.try_get::<_, i64>(index)? != 0)
        }
    }
}

/// One result row of either driver.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    pub fn get<T: Column>(&self, index: usize) -> Result<T> {
        match self {
            Row::Sqlite(row) => T::sqlite(row, index),
            Row::Postgres(row) => T::postgres(row, index),
        }
    }

    /// An output column, packed or not (`packed.rs`).
    pub(crate) fn output(&self, index: usize) -> Result<Option<String>> {
        match self {
            Row::Sqlite(row) => super::packed::unpack(row.get_ref(index)?, index),
            Row::Postgres(row) => Ok(row.try_get(index)?),
        }
    }
}

/// A connection or transaction of either backend, for the length of one
/// read or one writer batch.
pub struct Sql<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres {
        transaction: RefCell<postgres::Transaction<'a>>,
        /// The connection's prepared statements by SQL text: a statement
        /// sent by text would be parsed and planned on every call.
        statements: &'a RefCell<Statements>,
    },
}

/// A PostgreSQL connection's prepared statements.
pub type Statements = HashMap<String, postgres::Statement>;

impl<'a> Sql<'a> {
    pub fn sqlite(connection: &'a rusqlite::Connection) -> Sql<'a> {
        Sql {
            inner: Inner::Sqlite(connection),
        }
    }

    pub fn postgres(
        transaction: postgres::Transaction<'a>,
        statements: &'a RefCell<Statements>,
    ) -> Sql<'a> {
        Sql {
            inner: Inner::Postgres {
                transaction: RefCell::new(transaction),
                statements,
            },
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres { .. } => Dialect::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas).
    pub fn sqlite_connection(&self) -> Option<&rusqlite::Connection> {
        match self.inner {
            Inner::Sqlite(connection) => Some(connection),
            Inner::Postgres { .. } => None,
        }
    }

    /// Commits a PostgreSQL transaction; SQLite's is the caller's.
    pub fn commit(self) -> Result<()> {
        match self.inner {
            Inner::Sqlite(_) => Ok(()),
            Inner::Postgres { transaction, .. } => Ok(transaction.into_inner().commit()?),
        }
    }

    /// Runs a statement; answers the rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize> {
        match &self.inner {
            Inner::Sqlite(connection) => Ok(connection
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(sqlite_params(params)))?),
            Inner::Postgres {
                transaction,
                statements,
            } => {
                let statement = prepare(transaction, statements, sql)?;
                let changed = transaction
                    .borrow_mut()
                    .execute(&statement, &postgres_params(params))?;
                Ok(changed as usize)
            }
        }
    }

    /// Runs an INSERT into a table keyed by `seq`; answers the new row's
    /// `seq`. SQLite answers it without RETURNING, which would give every
    /// insert a statement journal (page copies the profile showed).
    pub fn insert_seq(&self, sql: &str, params: &[&dyn Param]) -> Result<i64> {
        match &self.inner {
            Inner::Sqlite(connection) => {
                self.execute(sql, params)?;
                Ok(connection.last_insert_rowid())
            }
            Inner::Postgres { .. } => {
                self.query_one(&format!("{sql} RETURNING seq"), params, |row| row.get(0))
            }
        }
    }

    /// Calls `each` for every row in order until it answers false.
    pub fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut each: impl FnMut(&Row<'_>) -> Result<bool>,
    ) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(connection) => {
                let mut statement = connection.prepare_cached(sql)?;
                let mut rows =
                    statement.query(rusqlite::params_from_iter(sqlite_params(params)))?;
                while let Some(row) = rows.next()? {
                    if !each(&Row::Sqlite(row))? {
                        break;
                    }
                }
                Ok(())
            }
            Inner::Postgres {
                transaction,
                statements,
            } => {
                let statement = prepare(transaction, statements, sql)?;
                let rows = transaction
                    .borrow_mut()
                    .query(&statement, &postgres_params(params))?;
                for row in &rows {
                    if !each(&Row::Postgres(row))? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Every row, decoded by `decode`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut decode: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut answer = Vec::new();
        self.query_each(sql, params, |row| {
            answer.push(decode(row)?);
            Ok(true)
        })?;
        Ok(answer)
    }

    /// The first row, if there is one.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        decode: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut decode = Some(decode);
        let mut answer = None;
        self.query_each(sql, params, |row| {
            if let Some(decode) = decode.take() {
                answer = Some(decode(row)?);
            }
            Ok(false)
        })?;
        Ok(answer)
    }

    /// The first row, which must be there.
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        decode: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.query_row(sql, params, decode)?
            .ok_or_else(|| Error::Sqlite(format!("no row answered: {sql}")))
    }
}

fn sqlite_params<'p>(
    params: &'p [&'p dyn Param],
) -> impl Iterator<Item = &'p dyn rusqlite::ToSql> + 'p {
    params.iter().map(|param| *param as &dyn rusqlite::ToSql)
}

fn postgres_params<'p>(
    params: &'p [&'p dyn Param],
) -> Vec<&'p (dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|param| *param as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// The statement for `sql`, prepared once per connection.
fn prepare(
    transaction: &RefCell<postgres::Transaction<'_>>,
    statements: &RefCell<Statements>,
    sql: &str,
) -> Result<postgres::Statement> {
    if let Some(statement) = statements.borrow().get(sql) {
        return Ok(statement.clone());
    }
    let statement = transaction.borrow_mut().prepare(&placeholders(sql))?;
    statements
        .borrow_mut()
        .insert(sql.to_string(), statement.clone());
    Ok(statement)
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N`, outside quoted text.
/// A bare `?` takes the next number, as SQLite numbers it.
pub fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut next = 1usize;
    while let Some(c) = chars.next() {
        if let Some(open) = quote {
            out.push(c);
            if c == open {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let number = digits.parse().unwrap_or(next);
                next = number + 1;
                out.push('$');
                out.push_str(&number.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c IN (?, ?) AND d = '?2'"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) AND d = '?2'"
        );
        assert_eq!(placeholders("x = ?12"), "x = $12");
    }
}
