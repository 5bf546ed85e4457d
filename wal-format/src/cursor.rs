//! Bounds-checked little-endian reading. All decoding goes through here so that no
//! length or offset read from untrusted bytes can index out of bounds.

use crate::error::{FormatError, Result};

pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data[0]` in the whole input, for error messages.
    base: u64,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8], base: u64, what: &'static str) -> Self {
        Cursor {
            data,
            pos: 0,
            base,
            what,
        }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(FormatError::Truncated {
                what: self.what.to_string(),
                offset: self.offset(),
                need: n as u64,
                have: self.remaining() as u64,
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A `u16` length followed by that many UTF-8 bytes.
    pub(crate) fn str16(&mut self, field: &str) -> Result<String> {
        let at = self.offset();
        let n = self.u16()? as usize;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| FormatError::malformed(self.what, at, format!("{field} is not UTF-8")))
    }

    /// A `u32` length followed by that many bytes.
    pub(crate) fn bytes32(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    pub(crate) fn expect_end(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(FormatError::malformed(
                self.what,
                self.offset(),
                format!("{} unexpected trailing bytes", self.remaining()),
            ));
        }
        Ok(())
    }
}

/// Appends a `u16`-length-prefixed string. Callers validate lengths before encoding;
/// an over-long string here is a programming error.
pub(crate) fn put_str16(out: &mut Vec<u8>, s: &str) {
    let n = u16::try_from(s.len()).expect("caller validated string length fits u16");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    let n = u32::try_from(b.len()).expect("caller validated byte length fits u32");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(b);
}
