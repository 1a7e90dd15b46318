//! An entry's encoded form written in place: its length worked out first (so the ring reserves
//! exactly that), then the bytes, with no intermediate buffer.

/// Length of an event's JSON form (see `RoomLog::append`), if it fits a `u32`.
#[cfg(feature = "json")]
pub(super) fn json_event_len(offset: u64, kind: &str, payload: &str) -> Option<u32> {
    let fixed = r#"{"offset":,"kind":"","payload":}"#.len();
    let len = fixed + decimal_len(offset) + kind.len() + payload.len();
    u32::try_from(len).ok()
}

/// Digits of `v` in decimal.
#[cfg(feature = "json")]
pub(super) const fn decimal_len(v: u64) -> usize {
    match v.checked_ilog10() {
        Some(d) => d as usize + 1,
        None => 1,
    }
}

/// Bytes of `v` as a postcard (LEB128) varint.
pub(super) const fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Writes into a slice sized exactly beforehand.
pub(super) struct Writer<'b> {
    pub(super) buf: &'b mut [u8],
    pub(super) pos: usize,
}

impl Writer<'_> {
    pub(super) fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }

    #[cfg(feature = "json")]
    pub(super) fn decimal(&mut self, v: u64) {
        self.put(crate::text::decimal(v, &mut [0u8; 20]));
    }

    pub(super) fn varint(&mut self, mut v: u64) {
        let mut tmp = [0u8; 10];
        let mut n = 0;
        for b in tmp.iter_mut() {
            n += 1;
            if v < 0x80 {
                *b = v as u8;
                break;
            }
            *b = v as u8 | 0x80;
            v >>= 7;
        }
        self.put(tmp.get(..n).unwrap_or(&[]));
    }
}
