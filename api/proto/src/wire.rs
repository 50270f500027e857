//! Protobuf wire format: a bounds-checked reader of varints, fixed-width values and
//! length-delimited fields.

use crate::Error;

/// Wire type 0: varint.
pub(crate) const VARINT: u8 = 0;
/// Wire type 1: 64-bit.
pub(crate) const FIXED64: u8 = 1;
/// Wire type 2: length-delimited.
pub(crate) const LEN: u8 = 2;
/// Wire type 5: 32-bit.
pub(crate) const FIXED32: u8 = 5;

/// Reads protobuf values from a byte slice; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Error> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(Error::Truncated)?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(Error::VarintOverflow);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn fixed32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, Error> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// A length-delimited value: the length varint, then that many bytes.
    pub(crate) fn len_delimited(&mut self) -> Result<&'a [u8], Error> {
        let len = self.varint()?;
        let remaining = self.buf.len().saturating_sub(self.pos);
        match usize::try_from(len) {
            Ok(n) if n <= remaining => self.take(n),
            _ => Err(Error::LengthOutOfRange { len, remaining }),
        }
    }

    /// A field key: (field number, wire type).
    pub(crate) fn key(&mut self) -> Result<(u32, u8), Error> {
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        let num = key >> 3;
        if num == 0 || num > 0x1fff_ffff {
            return Err(Error::InvalidFieldNumber(num));
        }
        Ok((num as u32, wire_type))
    }

    /// Skips the value of a field that the schema does not know.
    pub(crate) fn skip(&mut self, wire_type: u8) -> Result<(), Error> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            other => Err(Error::UnsupportedWireType(other)),
        }
    }
}
