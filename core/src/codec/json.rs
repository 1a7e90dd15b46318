//! The JSON text form: one JSON object per message, for browsers and plain WebSocket clients.
//!
//! It lives in the core behind the `json` feature, on `serde_json` with `alloc` rather than
//! `serde-json-core`, because a payload travels inline as an arbitrary JSON value and only
//! `serde_json`'s `RawValue` can carry one without parsing it: the payload is borrowed as raw text
//! from the message. Strings are borrowed too ([`crate::text`] keeps them free of escapes); the
//! heap is used only for the outer list of a batch or hello.

use alloc::vec::Vec;

use crate::error::{DecodeError, EncodeError};
use crate::frame::{Frame, Inbound};
use crate::payload::NOT_JSON;
use crate::text::decimal;

/// Decodes one frame from a whole JSON text message.
///
/// A message longer than `max_frame` is refused before any parsing. Unknown fields are ignored
/// (later versions may add them); anything but white space after the object is an error.
pub fn decode(bytes: &[u8], max_frame: usize) -> Result<Frame<'_>, DecodeError> {
    if bytes.len() > max_frame {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: max_frame,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    match serde_json::from_slice::<Inbound<'_>>(bytes) {
        Ok(Inbound::Frame(frame)) => {
            frame.validate()?;
            Ok(frame)
        }
        Ok(Inbound::Unknown(tag)) => Err(DecodeError::UnknownKind { tag }),
        Err(e) => Err(match e.classify() {
            serde_json::error::Category::Eof => DecodeError::Truncated,
            serde_json::error::Category::Syntax => DecodeError::Malformed("JSON syntax"),
            _ => DecodeError::Malformed("JSON value of the wrong shape"),
        }),
    }
}

/// Encodes `frame` as JSON text, appended to `out`.
///
/// A batch from a server session that reads room logs keeping JSON forms costs a copy: its events
/// were written as JSON once, when they were appended, and are put in the batch as they are.
pub fn encode_into(frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    frame.validate()?;
    if let Frame::Batch(batch) = frame {
        if let Some(events) = batch.events.json_text() {
            // serde cannot write text it did not produce except through `RawValue`, which only
            // comes from parsing; so the envelope is written here, exactly as serde_json writes
            // it (a test holds the two to the same bytes). Names need no escaping (`text`).
            out.extend_from_slice(br#"{"batch":{"room":""#);
            out.extend_from_slice(batch.room.as_bytes());
            out.extend_from_slice(br#"","epoch":"#);
            out.extend_from_slice(decimal(u64::from(batch.epoch), &mut [0; 20]));
            out.extend_from_slice(br#","events":["#);
            out.extend_from_slice(events);
            out.extend_from_slice(b"]}}");
            return Ok(());
        }
    }
    let start = out.len();
    // serde_json writes into a caller's buffer only with `std`; without it, into a fresh `Vec`.
    #[cfg(feature = "std")]
    let written = serde_json::to_writer(&mut *out, frame);
    #[cfg(not(feature = "std"))]
    let written = serde_json::to_vec(frame).map(|v| out.extend_from_slice(&v));
    written.map_err(|e| {
        out.truncate(start);
        // serde_json keeps only the text of custom errors, so the payload's is recognised by it.
        if alloc::format!("{e}").contains(NOT_JSON) {
            EncodeError::PayloadNotJson
        } else {
            EncodeError::Malformed("frame")
        }
    })
}

/// Encodes `frame` as JSON text.
pub fn encode(frame: &Frame<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(frame, &mut out)?;
    Ok(out)
}
