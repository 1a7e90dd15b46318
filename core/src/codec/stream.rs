//! Byte-stream framing: COBS-encoded binary frames, each ended by a zero byte.
//!
//! For transports without message boundaries (TCP, serial lines, radio links). COBS removes every
//! zero from the frame, so a zero always ends a frame and a receiver that joins mid-stream or hits
//! garbage resynchronises at the next zero. Buffering uses postcard's `CobsAccumulator`, whose
//! capacity `N` is the largest encoded frame accepted.
//!
//! Invariant: after a frame overflowed the buffer, everything up to the next zero is discarded,
//! so the tail of an oversize frame can never be read as a frame of its own.

use postcard::accumulator::{CobsAccumulator, FeedResult};

use crate::codec::binary;
use crate::error::{DecodeError, EncodeError};
use crate::frame::{Frame, Inbound};

/// Incremental decoder of a COBS-framed byte stream, fed arbitrary chunks.
///
/// ```
/// use eventwire_core::codec::stream::{self, StreamDecoder};
/// use eventwire_core::frame::{Frame, Ping};
///
/// let mut wire = [0u8; 32];
/// let n = stream::encode(&Frame::Ping(Ping { nonce: 7 }), &mut wire).unwrap().len();
/// let mut decoder = StreamDecoder::<256>::new();
/// // The frame arrives in two chunks.
/// let (first, rest) = decoder.feed(&wire[..2]);
/// assert!(first.is_none() && rest.is_empty());
/// let (frame, _rest) = decoder.feed(&wire[2..n]);
/// assert_eq!(frame, Some(Ok(Frame::Ping(Ping { nonce: 7 }))));
/// ```
pub struct StreamDecoder<const N: usize> {
    acc: CobsAccumulator<N>,
    discarding: bool,
}

impl<const N: usize> Default for StreamDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> StreamDecoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        StreamDecoder {
            acc: CobsAccumulator::new(),
            discarding: false,
        }
    }

    /// Feeds bytes and returns at most one decoded frame (or decode error) together with the
    /// part of `input` not consumed yet. Call again with that rest until it is empty; the frame
    /// borrows the decoder, so handle it before the next call.
    ///
    /// Errors do not poison the decoder: after one, decoding resumes at the next frame.
    #[allow(clippy::type_complexity)]
    pub fn feed<'d, 'i>(
        &'d mut self,
        mut input: &'i [u8],
    ) -> (Option<Result<Frame<'d>, DecodeError>>, &'i [u8]) {
        if self.discarding {
            match input.iter().position(|&b| b == 0) {
                Some(end) => {
                    self.discarding = false;
                    input = &input[end + 1..];
                }
                None => return (None, &[]),
            }
        }
        let has_end = input.contains(&0);
        match self.acc.feed_ref::<Inbound<'d>>(input) {
            FeedResult::Consumed => (None, &[]),
            FeedResult::OverFull(rest) => {
                if !has_end {
                    self.discarding = true;
                }
                let err = DecodeError::TooLarge {
                    size: N + 1,
                    limit: N,
                };
                let rest = if has_end { rest } else { &[] };
                (Some(Err(err)), rest)
            }
            FeedResult::DeserError(rest) => {
                (Some(Err(DecodeError::Malformed("stream frame"))), rest)
            }
            FeedResult::Success { data, remaining } => {
                (Some(binary::from_postcard(Ok(data))), remaining)
            }
        }
    }
}

/// Decodes one COBS-framed frame (its terminating zero may be included) in place: `buf` is
/// unstuffed and the frame borrows from it.
pub fn decode_in_place(buf: &mut [u8]) -> Result<Frame<'_>, DecodeError> {
    match postcard::from_bytes_cobs::<Inbound<'_>>(buf) {
        Ok(inbound) => binary::from_postcard(Ok(inbound)),
        Err(_) => Err(DecodeError::Malformed("stream frame")),
    }
}

/// Encodes `frame` COBS-framed (zero byte included) and appends it to `out`.
#[cfg(feature = "alloc")]
pub fn encode_into(frame: &Frame<'_>, out: &mut alloc::vec::Vec<u8>) -> Result<(), EncodeError> {
    let raw = binary::encoded_len(frame)?;
    let start = out.len();
    out.resize(start + raw + raw / 254 + 2, 0);
    match encode(frame, &mut out[start..]) {
        Ok(written) => {
            let n = written.len();
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Encodes `frame` COBS-framed (zero byte included) into `buf`, returning the written prefix.
pub fn encode<'b>(frame: &Frame<'_>, buf: &'b mut [u8]) -> Result<&'b mut [u8], EncodeError> {
    let raw = binary::encoded_len(frame)?;
    // COBS adds one byte per 254 and the terminating zero.
    let needed = raw + raw / 254 + 2;
    if buf.len() < needed {
        return Err(EncodeError::BufferTooSmall { needed });
    }
    postcard::to_slice_cobs(frame, buf).map_err(|_| EncodeError::BufferTooSmall { needed })
}
