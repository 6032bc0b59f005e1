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
    Blob(std::borrow::Cow<'a, [u8]>),
}

/// A completed run's output on its way to the writer. `Writer::submit`
/// packs it on the sender's thread (a worker), so that the writer thread,
/// the serial path, only binds it: packing was 6% of the writer's time in
/// issue 18's profile.
#[derive(Debug, Clone)]
pub struct FinishOutput {
    text: String,
    packing: Packing,
}

#[derive(Debug, Clone)]
enum Packing {
    NotYet,
    Text,
    Blob(Vec<u8>),
}

impl FinishOutput {
    /// The output as JSON text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Packs now, on the calling thread, for a writer of `dialect`.
    pub(crate) fn prepack(&mut self, dialect: Dialect) {
        if matches!(self.packing, Packing::NotYet) {
            self.packing = match Packed::new(dialect, &self.text) {
                Packed::Text(_) => Packing::Text,
                Packed::Blob(bytes) => Packing::Blob(bytes.into_owned()),
            };
        }
    }

    /// What the writer binds: packed ahead when `prepack` ran, else now.
    pub(crate) fn packed(&self, dialect: Dialect) -> Packed<'_> {
        match &self.packing {
            Packing::NotYet => Packed::new(dialect, &self.text),
            Packing::Text => Packed::Text(&self.text),
            Packing::Blob(bytes) if dialect == Dialect::Sqlite => {
                Packed::Blob(std::borrow::Cow::Borrowed(bytes))
            }
            Packing::Blob(_) => Packed::Text(&self.text),
        }
    }
}

impl From<String> for FinishOutput {
    fn from(text: String) -> FinishOutput {
        FinishOutput {
            text,
            packing: Packing::NotYet,
        }
    }
}

impl From<&str> for FinishOutput {
    fn from(text: &str) -> FinishOutput {
        FinishOutput::from(text.to_string())
    }
}

impl<'a> Packed<'a> {
    pub(crate) fn new(dialect: Dialect, text: &'a str) -> Packed<'a> {
        if dialect == Dialect::Postgres || text.len() < PACK_BYTES_MIN {
            return Packed::Text(text);
        }
        let packed = lz4_flex::compress_prepend_size(text.as_bytes());
        if packed.len() < text.len() {
            Packed::Blob(std::borrow::Cow::Owned(packed))
        } else {
            Packed::Text(text)
        }
    }
}

impl rusqlite::ToSql for Packed<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Packed::Text(text) => rusqlite::types::ToSqlOutput::from(*text),
            Packed::Blob(bytes) => rusqlite::types::ToSqlOutput::from(bytes.as_ref()),
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

    /// Packed ahead on a worker or by the writer, the bytes bound are the
    /// same; PostgreSQL gets the text whichever way.
    #[test]
    fn an_output_packed_ahead_binds_what_the_writer_would_have_packed() {
        let bound = |packed: Packed<'_>| match packed {
            Packed::Text(text) => (false, text.as_bytes().to_vec()),
            Packed::Blob(bytes) => (true, bytes.into_owned()),
        };
        let long = format!("{{\"summary\":\"{}\"}}", "a mock sentence. ".repeat(40));
        let noise: String = (0..600u32)
            .map(|i| char::from(b'!' + (i.wrapping_mul(2_654_435_761) >> 27) as u8))
            .collect();
        for text in [long.as_str(), noise.as_str(), "{\"a\":1}"] {
            for dialect in [Dialect::Sqlite, Dialect::Postgres] {
                let late = FinishOutput::from(text);
                let mut early = FinishOutput::from(text);
                early.prepack(Dialect::Sqlite);
                let expected = bound(Packed::new(dialect, text));
                assert_eq!(bound(late.packed(dialect)), expected, "{dialect:?}");
                assert_eq!(bound(early.packed(dialect)), expected, "{dialect:?}");
                assert_eq!(early.text(), text);
            }
        }
        let mut long_ahead = FinishOutput::from(long.as_str());
        long_ahead.prepack(Dialect::Sqlite);
        assert!(
            bound(long_ahead.packed(Dialect::Sqlite)).0,
            "a long output is packed"
        );
    }

    #[test]
    fn a_damaged_blob_is_an_error_not_a_panic() {
        let error =
            unpack(rusqlite::types::ValueRef::Blob(&[200, 0, 0, 0, 1]), 3).expect_err("damaged");
        assert!(error.to_string().contains("column 3"), "{error}");
    }
}
