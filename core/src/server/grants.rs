//! What a connection may do beyond reading rooms that exist: the rooms it may publish into, and
//! the rooms it may create.
//!
//! Reading is decided per join ([`Decision::Authorize`](super::Decision::Authorize)); writing is
//! decided once per connection, when it is authenticated: the application's verdict carries the
//! connection's [`Grants`], and the session checks every publish against them before anything
//! else (deduplication, rate, the room). A publish outside them is refused with
//! `FORBIDDEN_ROOM` and its id, counted, and never reaches a room.
//!
//! **Secure by default.** A session starts with [`Grants::none`]: until the application grants
//! more, no client writes into any room, so a page on any site that reaches the server cannot
//! forge events that dashboards show. Nor does it create rooms: a join or publish naming a room
//! the application has not created (by emitting to it or declaring it with
//! [`Hub::ensure_room`](crate::hub::Hub::ensure_room)) is refused with `NO_SUCH_ROOM`, unless the
//! grants allow creating it ([`Grants::create_rooms`]). Rooms clients create are bounded apart
//! and freed when idle (see [`hub`](crate::hub)).
//!
//! Invariant: a rule names at most [`MAX_RULES`] rooms or prefixes, each a valid room name (a
//! prefix is one followed by `*`), so checking a publish costs a bounded scan.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::text::check_name;

/// Most rooms or prefixes one [`Grants`] names.
pub const MAX_RULES: usize = 32;

/// The rooms a connection may publish into and create. Build with [`Grants::none`] (the
/// default), [`Grants::publish_any`] or [`Grants::publish_to`], then
/// [`Grants::create_rooms`] / [`Grants::create_any`] to let it create rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    publish: Rule,
    create: Rule,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Rule {
    /// No room.
    #[default]
    Nothing,
    /// Every room.
    Any,
    /// Rooms named exactly, and rooms that start with a prefix.
    Rooms {
        exact: Vec<String>,
        prefixes: Vec<String>,
    },
}

/// Why a [`Grants::publish_to`] rule was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantsError {
    /// More than [`MAX_RULES`] rooms and prefixes.
    TooMany,
    /// This entry is neither a room name nor a room name followed by `*`.
    Invalid(String),
}

impl fmt::Display for GrantsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantsError::TooMany => write!(f, "more than {MAX_RULES} rooms or prefixes"),
            GrantsError::Invalid(entry) => {
                write!(f, "{entry:?} is not a room name, nor one followed by '*'")
            }
        }
    }
}

impl core::error::Error for GrantsError {}

impl Grants {
    /// Publishing into no room and creating none: the default.
    pub const fn none() -> Self {
        Grants {
            publish: Rule::Nothing,
            create: Rule::Nothing,
        }
    }

    /// Publishing into every room that exists. For a server whose every client is trusted
    /// (behind authentication, or on a private network).
    pub const fn publish_any() -> Self {
        Grants {
            publish: Rule::Any,
            create: Rule::Nothing,
        }
    }

    /// Publishing into the rooms named, and into every room that starts with an entry ending in
    /// `*` (`"agent:*"` covers `agent:7`). An entry must be a room name (with the `*` left out for
    /// a prefix); at most [`MAX_RULES`] entries.
    pub fn publish_to<I, S>(rooms: I) -> Result<Self, GrantsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Grants {
            publish: Rule::parse(rooms)?,
            create: Rule::Nothing,
        })
    }

    /// Also allows creating the rooms named, or starting with an entry ending in `*`, by joining
    /// or publishing into them; same rules as [`Grants::publish_to`]. Such rooms are freed once
    /// idle, and at most `HubConfig::max_client_rooms` exist at a time.
    pub fn create_rooms<I, S>(mut self, rooms: I) -> Result<Self, GrantsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.create = Rule::parse(rooms)?;
        Ok(self)
    }

    /// Also allows creating any room by joining or publishing into it: the behaviour of a
    /// server without room hygiene, for development or fully trusted clients.
    #[must_use]
    pub fn create_any(mut self) -> Self {
        self.create = Rule::Any;
        self
    }

    /// Whether a connection holding these grants may publish into `room`.
    pub fn may_publish(&self, room: &str) -> bool {
        self.publish.covers(room)
    }

    /// Whether a connection holding these grants may create `room` (when it does not exist).
    pub fn may_create(&self, room: &str) -> bool {
        self.create.covers(room)
    }
}

impl Rule {
    fn parse<I, S>(rooms: I) -> Result<Rule, GrantsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        for entry in rooms {
            let entry = entry.as_ref();
            if exact.len() + prefixes.len() >= MAX_RULES {
                return Err(GrantsError::TooMany);
            }
            let (name, list) = match entry.strip_suffix('*') {
                Some(prefix) => (prefix, &mut prefixes),
                None => (entry, &mut exact),
            };
            if check_name(name, "room").is_err() {
                return Err(GrantsError::Invalid(String::from(entry)));
            }
            list.push(String::from(name));
        }
        Ok(Rule::Rooms { exact, prefixes })
    }

    fn covers(&self, room: &str) -> bool {
        match self {
            Rule::Nothing => false,
            Rule::Any => true,
            Rule::Rooms { exact, prefixes } => {
                exact.iter().any(|r| r == room) || prefixes.iter().any(|p| room.starts_with(p))
            }
        }
    }
}
