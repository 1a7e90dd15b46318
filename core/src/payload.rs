//! Event payloads: opaque bytes to the core.
//!
//! Applications put typed events in payloads, encoded with postcard or JSON; the core never looks
//! inside. The binary codec carries a payload as a byte string borrowed from the message. The JSON
//! codec carries it inline as a JSON value (so a browser sees `"payload": {"agent_id": ...}`),
//! which means a frame can only take the JSON form when its payload is itself JSON text.

use core::fmt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The application's bytes of one event or publish, borrowed from the message they came in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Payload<'a>(pub &'a [u8]);

impl<'a> Payload<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.0) {
            Ok(s) => write!(f, "Payload({s:?})"),
            Err(_) => write!(f, "Payload({:02x?})", self.0),
        }
    }
}

/// Message of the serialisation error raised when a payload that is not JSON text is put in the
/// JSON form of a frame.
#[cfg(feature = "json")]
pub(crate) const NOT_JSON: &str = "payload is not JSON text";

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[cfg(feature = "json")]
        if s.is_human_readable() {
            use serde::ser::Error as _;
            let raw: &serde_json::value::RawValue =
                serde_json::from_slice(self.0).map_err(|_| S::Error::custom(NOT_JSON))?;
            return raw.serialize(s);
        }
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Payload<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[cfg(feature = "json")]
        if d.is_human_readable() {
            let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
            return Ok(Payload(raw.get().as_bytes()));
        }
        <&'de [u8]>::deserialize(d).map(Payload)
    }
}

/// A payload known to be one JSON value, without white space around it: what the JSON form of a
/// frame carries inline. A room log keeping JSON forms checks every payload at append unless it
/// comes as `JsonText` ([`RoomLog::append_json`](crate::history::RoomLog::append_json)), which
/// can only be made by that same check ([`JsonText::new`]) or by `serde_json` writing it
/// ([`JsonText::write`]).
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonText<'a>(&'a str);

#[cfg(feature = "json")]
impl<'a> JsonText<'a> {
    /// `bytes`, if they are one JSON value (white space around it is left out).
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        crate::json_text::json_text(bytes).map(JsonText)
    }

    /// Serialises `value` with `serde_json` into `buf` (cleared first) and returns the text.
    pub fn write<T: Serialize + ?Sized>(
        value: &T,
        buf: &'a mut alloc::vec::Vec<u8>,
    ) -> Result<Self, serde_json::Error> {
        buf.clear();
        #[cfg(feature = "std")]
        serde_json::to_writer(&mut *buf, value)?;
        #[cfg(not(feature = "std"))]
        {
            *buf = serde_json::to_vec(value)?;
        }
        // serde_json writes UTF-8 and one value with no white space around it.
        let text = core::str::from_utf8(buf).map_err(|_| {
            <serde_json::Error as serde::ser::Error>::custom("serde_json wrote invalid UTF-8")
        })?;
        Ok(JsonText(text))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}
