//! The binary form: one postcard-encoded frame per message.
//!
//! Used as is over message transports (one WebSocket binary message per frame); the
//! [`stream`](super::stream) module adds COBS framing for byte streams.

use crate::error::{DecodeError, EncodeError};
use crate::frame::{Frame, Inbound};

/// Decodes one frame from a whole message, borrowing strings and payloads from `bytes`.
///
/// A message longer than `max_frame` is refused before any parsing. Bytes after the frame are
/// ignored: they are the room later protocol versions use to extend a frame.
pub fn decode(bytes: &[u8], max_frame: usize) -> Result<Frame<'_>, DecodeError> {
    if bytes.len() > max_frame {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: max_frame,
        });
    }
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    from_postcard(postcard::from_bytes::<Inbound<'_>>(bytes))
}

pub(crate) fn from_postcard(r: postcard::Result<Inbound<'_>>) -> Result<Frame<'_>, DecodeError> {
    match r {
        Ok(Inbound::Frame(frame)) => {
            frame.validate()?;
            Ok(frame)
        }
        Ok(Inbound::Unknown(tag)) => Err(DecodeError::UnknownKind { tag }),
        Err(e) => Err(map_error(e)),
    }
}

pub(crate) fn map_error(e: postcard::Error) -> DecodeError {
    use postcard::Error as P;
    match e {
        P::DeserializeUnexpectedEnd => DecodeError::Truncated,
        P::DeserializeBadVarint => DecodeError::Malformed("bad varint"),
        P::DeserializeBadBool => DecodeError::Malformed("bad bool"),
        P::DeserializeBadChar | P::DeserializeBadUtf8 => DecodeError::Malformed("bad UTF-8"),
        P::DeserializeBadOption => DecodeError::Malformed("bad option tag"),
        P::DeserializeBadEnum => DecodeError::Malformed("bad enum tag"),
        P::DeserializeBadEncoding => DecodeError::Malformed("bad COBS encoding"),
        _ => DecodeError::Malformed("bad field value"),
    }
}

/// The size of `frame` in the binary form.
pub fn encoded_len(frame: &Frame<'_>) -> Result<usize, EncodeError> {
    frame.validate()?;
    postcard::experimental::serialized_size(frame).map_err(|_| EncodeError::Malformed("frame"))
}

/// Encodes `frame` into `buf`, returning the written prefix. A buffer that is too small gives
/// [`EncodeError::BufferTooSmall`] with the size needed.
pub fn encode<'b>(frame: &Frame<'_>, buf: &'b mut [u8]) -> Result<&'b mut [u8], EncodeError> {
    frame.validate()?;
    let len = buf.len();
    match postcard::to_slice(frame, buf) {
        Ok(out) => Ok(out),
        Err(postcard::Error::SerializeBufferFull) => Err(EncodeError::BufferTooSmall {
            needed: postcard::experimental::serialized_size(frame).unwrap_or(len + 1),
        }),
        Err(_) => Err(EncodeError::Malformed("frame")),
    }
}

/// Encodes `frame` and appends it to `out`.
#[cfg(feature = "alloc")]
pub fn encode_into(frame: &Frame<'_>, out: &mut alloc::vec::Vec<u8>) -> Result<(), EncodeError> {
    frame.validate()?;
    let needed = postcard::experimental::serialized_size(frame)
        .map_err(|_| EncodeError::Malformed("frame"))?;
    let start = out.len();
    out.resize(start + needed, 0);
    match postcard::to_slice(frame, &mut out[start..]) {
        Ok(_) => Ok(()),
        Err(_) => {
            out.truncate(start);
            Err(EncodeError::Malformed("frame"))
        }
    }
}
