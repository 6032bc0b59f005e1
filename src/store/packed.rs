//! Outputs as SQLite stores them: compressed (LZ4 block, its length first)
//! in a BLOB when that saves space, else plain TEXT, so that rows written
//! before this existed, and short outputs, read back unchanged. An output
//! is most of a completed run's row (a `mock` output is about 3 KB, which
//! fills a 4 KB page by itself); packed, three or four rows share a page.
//!
//! PostgreSQL is given the text: it compresses long values itself (TOAST).
//! Owns only the packing; which column holds an output is `read.rs`'s and
//! the writer's.

use super::sql::{Dialect, Param};
use super::{Error, Result};

/// Texts shorter than this are stored as they are: packing them saves
/// little, and a short output stays readable with the `sqlite3` shell.
const PACK_BYTES_MIN: usize = 256;

/// An output ready to bind: packed on SQLite when that is smaller.
#[derive(Debug)]
pub(crate) enum Packed<'a> {
    Text(&'a str),
    Blob(Vec<u8>),
}

impl<'a> Packed<'a> {
    pub(crate) fn new(dialect: Dialect, text: &'a str) -> Packed<'a> {
        if dialect == Dialect::Postgres || text.len() < PACK_BYTES_MIN {
            return Packed::Text(text);
        }
        let packed = lz4_flex::compress_prepend_size(text.as_bytes());
        if packed.len() < text.len() {
            Packed::Blob(packed)
        } else {
            Packed::Text(text)
        }
    }
}

impl rusqlite::ToSql for Packed<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Packed::Text(text) => rusqlite::types::ToSqlOutput::from(*text),
            Packed::Blob(bytes) => rusqlite::types::ToSqlOutput::from(bytes.as_slice()),
        })
    }
}

impl postgres::types::ToSql for Packed<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        match self {
            Packed::Text(text) => text.to_sql(ty, out),
            // `new` never packs for PostgreSQL.
            Packed::Blob(_) => Err("a packed output is SQLite's alone".into()),
        }
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        <&str as postgres::types::ToSql>::accepts(ty)
    }

    postgres::types::to_sql_checked!();
}

impl Param for Packed<'_> {}
impl Param for Option<Packed<'_>> {}

/// The text of a stored output: SQLite's BLOB unpacked, TEXT as it is.
pub(crate) fn unpack(value: rusqlite::types::ValueRef<'_>, index: usize) -> Result<Option<String>> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Text(text) => String::from_utf8(text.to_vec())
            .map(Some)
            .map_err(|e| Error::Sqlite(format!("column {index} is not UTF-8: {e}"))),
        ValueRef::Blob(bytes) => {
            let damaged =
                |why: String| Error::Sqlite(format!("column {index} does not unpack: {why}"));
            let (size, block) = match bytes {
                [a, b, c, d, block @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, block),
                _ => return Err(damaged("shorter than its length".into())),
            };
            // A damaged length must not allocate without bound: nothing
            // stored was larger than a request body may be.
            if size > crate::limits::BODY_BYTES_MAX {
                return Err(damaged(format!("a length of {size} bytes")));
            }
            let unpacked =
                lz4_flex::block::decompress(block, size).map_err(|e| damaged(e.to_string()))?;
            if unpacked.len() != size {
                return Err(damaged(format!("{} bytes, not {size}", unpacked.len())));
            }
            String::from_utf8(unpacked)
                .map(Some)
                .map_err(|e| Error::Sqlite(format!("column {index} is not UTF-8: {e}")))
        }
        other => Err(Error::Sqlite(format!(
            "column {index} holds a {:?}, not an output",
            other.data_type()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_outputs_pack_and_unpack_to_the_same_text() {
        let text = format!("{{\"summary\":\"{}\"}}", "a mock sentence. ".repeat(40));
        let Packed::Blob(bytes) = Packed::new(Dialect::Sqlite, &text) else {
            panic!("a long repetitive text is packed");
        };
        assert!(bytes.len() < text.len() / 4, "{} bytes", bytes.len());
        let back = unpack(rusqlite::types::ValueRef::Blob(&bytes), 0).expect("unpacks");
        assert_eq!(back.as_deref(), Some(text.as_str()));
    }

    #[test]
    fn short_outputs_and_postgres_keep_text() {
        assert!(matches!(
            Packed::new(Dialect::Sqlite, "{\"a\":1}"),
            Packed::Text(_)
        ));
        let long = "x".repeat(4_000);
        assert!(matches!(
            Packed::new(Dialect::Postgres, &long),
            Packed::Text(_)
        ));
        let back = unpack(rusqlite::types::ValueRef::Text(b"{\"a\":1}"), 0).expect("reads");
        assert_eq!(back.as_deref(), Some("{\"a\":1}"));
    }

    #[test]
    fn a_damaged_blob_is_an_error_not_a_panic() {
        let error =
            unpack(rusqlite::types::ValueRef::Blob(&[200, 0, 0, 0, 1]), 3).expect_err("damaged");
        assert!(error.to_string().contains("column 3"), "{error}");
    }
}
