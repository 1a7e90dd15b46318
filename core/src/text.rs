//! The strings a frame carries, and the rules they keep.
//!
//! Every string on the wire is restricted to a small ASCII alphabet that no JSON encoder escapes
//! (not even the ones that escape `/` or `<>&`). That is what lets both codecs decode a frame
//! without copying: a room name or a reason borrows straight from the received message, with no
//! allocation and no unescaping. The rules are checked on encode and on decode, so a frame that
//! leaves one eventwire peer is always accepted by another.
//!
//! | string | length | alphabet |
//! |---|---|---|
//! | [`Name`] (room, event kind) | 1 to 64 bytes | `A-Z a-z 0-9 . _ : -` |
//! | token | 1 to 1024 bytes | `A-Z a-z 0-9 . _ ~ + = -` (base64url, JWT) |
//! | reason | 0 to 123 bytes | printable ASCII except `" \ / < > &` |
//!
//! 123 bytes is what fits in a WebSocket close frame next to its two-byte code.

use core::fmt;

/// Longest room or event-kind name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest authentication token, in bytes.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Longest human-readable reason in an error or close frame, in bytes.
pub const MAX_REASON_LEN: usize = 123;
/// Largest integer a frame may carry: JavaScript's `Number.MAX_SAFE_INTEGER`, so that every
/// integer survives a browser's `JSON.parse` unchanged.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Which rule a string or number in a frame broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalid {
    /// A room or event-kind name is empty, longer than [`MAX_NAME_LEN`] or uses a byte outside
    /// its alphabet. `field` names the frame field.
    Name {
        /// The field that holds the name, for example `"room"`.
        field: &'static str,
    },
    /// A token is empty, longer than [`MAX_TOKEN_LEN`] or outside its alphabet.
    Token,
    /// A reason is longer than [`MAX_REASON_LEN`] or outside its alphabet.
    Reason,
    /// An integer is above [`MAX_SAFE_INTEGER`].
    Integer {
        /// The field that holds the integer.
        field: &'static str,
    },
    /// A list holds more elements than the frame kind allows.
    TooMany {
        /// The field that holds the list.
        field: &'static str,
        /// The largest number of elements allowed.
        max: usize,
    },
    /// A gap names a range whose first offset is after its last.
    EmptyRange,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Name { field } => write!(
                f,
                "`{field}` must be 1 to {MAX_NAME_LEN} bytes of A-Z a-z 0-9 . _ : -"
            ),
            Invalid::Token => write!(
                f,
                "token must be 1 to {MAX_TOKEN_LEN} bytes of A-Z a-z 0-9 . _ ~ + = -"
            ),
            Invalid::Reason => write!(
                f,
                "reason must be at most {MAX_REASON_LEN} bytes of printable ASCII without \" \\ / < > &"
            ),
            Invalid::Integer { field } => {
                write!(f, "`{field}` is above 2^53 - 1")
            }
            Invalid::TooMany { field, max } => {
                write!(f, "`{field}` holds more than {max} elements")
            }
            Invalid::EmptyRange => f.write_str("gap range ends before it starts"),
        }
    }
}

/// A validated room or event-kind name, borrowed from wherever it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name<'a>(&'a str);

impl<'a> Name<'a> {
    /// Checks `s` against the name rules.
    pub fn new(s: &'a str) -> Result<Self, Invalid> {
        check_name(s, "name")?;
        Ok(Name(s))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The bytes of a name, as a table: every frame's room and kind are checked on decode and encode,
/// and a lookup per byte is the cheapest check there is.
const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-');
        b += 1;
    }
    table
};

pub(crate) fn check_name(s: &str, field: &'static str) -> Result<(), Invalid> {
    let ok =
        !s.is_empty() && s.len() <= MAX_NAME_LEN && s.bytes().all(|b| NAME_BYTES[usize::from(b)]);
    if ok {
        Ok(())
    } else {
        Err(Invalid::Name { field })
    }
}

pub(crate) fn check_token(s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.len() <= MAX_TOKEN_LEN
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'=' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Invalid::Token)
    }
}

pub(crate) fn check_reason(s: &str) -> Result<(), Invalid> {
    let ok = s.len() <= MAX_REASON_LEN
        && s.bytes().all(|b| {
            (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b'/' | b'<' | b'>' | b'&')
        });
    if ok {
        Ok(())
    } else {
        Err(Invalid::Reason)
    }
}

/// `v` in decimal ASCII, as JSON writes an integer, in `buf`. The JSON form of a batch is put
/// together from pieces written once (`history`, `codec::json`), which need integers written the
/// way `serde_json` writes them.
#[cfg(feature = "json")]
pub(crate) fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        if let Some(b) = buf.get_mut(start) {
            *b = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || start == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or(&[])
}

pub(crate) fn check_int(v: u64, field: &'static str) -> Result<(), Invalid> {
    if v <= MAX_SAFE_INTEGER {
        Ok(())
    } else {
        Err(Invalid::Integer { field })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Name::new("agent:agent-7.metrics_v2").is_ok());
        assert_eq!(Name::new(""), Err(Invalid::Name { field: "name" }));
        assert!(Name::new("a/b").is_err());
        assert!(Name::new("caf\u{e9}").is_err());
        assert!(Name::new(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(Name::new(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn tokens_and_reasons() {
        assert!(check_token("eyJhbGciOi.J9-_~+=").is_ok());
        assert!(check_token("").is_err());
        assert!(check_token("a/b").is_err());
        assert!(check_reason("").is_ok());
        assert!(check_reason("room 'x' is not allowed (policy)").is_ok());
        for bad in ["\"", "\\", "/", "<", ">", "&", "\n", "\u{7f}"] {
            assert!(check_reason(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_reason(&"r".repeat(MAX_REASON_LEN + 1)).is_err());
    }

    #[test]
    fn integers() {
        assert!(check_int(MAX_SAFE_INTEGER, "id").is_ok());
        assert_eq!(
            check_int(MAX_SAFE_INTEGER + 1, "id"),
            Err(Invalid::Integer { field: "id" })
        );
    }
}
