//! The application decisions a session's inputs raise, collected for the adapter.
//!
//! A session raises its requests ([`ServerEvent::Authenticate`], [`ServerEvent::Authorize`]) and
//! news of appended publishes ([`ServerEvent::Published`]) inside its inputs, while the adapter
//! holds the hub's lock. The application's hooks must not run there (they may block or await), so
//! every adapter records the events in a [`Decisions`], lets go of the lock, asks its hooks, and
//! settles each request with [`ServerSession::settle_auth`] and [`ServerSession::settle_join`].
//!
//! Invariants: at most one authentication request is pending (a later hello replaces it, and the
//! session refuses a second one anyway); joins are kept in the order the client asked for them;
//! taking a request removes it, so each is settled once.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use super::{ServerEvent, ServerSession};
use crate::code::CloseCode;
use crate::error::DecodeError;
use crate::hub::Hub;
use crate::time::Instant;

/// A hello awaiting the application's authentication decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPending {
    /// The client's identity.
    pub client_id: u64,
    /// Its token, if any.
    pub token: Option<String>,
}

/// The requests a session raised that wait for the application, and whether a publish landed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    auth: Option<AuthPending>,
    joins: Vec<String>,
    published: bool,
}

impl Decisions {
    /// Nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one event of a session input; pass it as (or from) the input's `sink`. Events
    /// that need no decision are ignored.
    pub fn record(&mut self, event: ServerEvent<'_>) {
        match event {
            ServerEvent::Authenticate { client_id, token } => {
                self.auth = Some(AuthPending {
                    client_id,
                    token: token.map(str::to_owned),
                });
            }
            ServerEvent::Authorize { room } => self.joins.push(room.to_owned()),
            ServerEvent::Published { .. } => self.published = true,
            _ => {}
        }
    }

    /// Takes the pending authentication request, if any.
    pub fn take_auth(&mut self) -> Option<AuthPending> {
        self.auth.take()
    }

    /// Takes the rooms awaiting authorisation, in the order they were asked for.
    pub fn take_joins(&mut self) -> Vec<String> {
        core::mem::take(&mut self.joins)
    }

    /// Whether a publish was appended to a room since the last call: the adapter then counts
    /// it and wakes the connections, as for an emit.
    pub fn take_published(&mut self) -> bool {
        core::mem::take(&mut self.published)
    }
}

impl ServerSession {
    /// Answers a frame that failed to decode: closes the session with the error's close code
    /// ([`DecodeError::close_code`]) and returns it, or returns `None` for an error to ignore.
    pub fn handle_decode_error(&mut self, error: &DecodeError) -> Option<CloseCode> {
        let code = error.close_code()?;
        self.close(code, None, "bad frame");
        Some(code)
    }

    /// Settles an authentication request with the application's verdict: accepts the hello
    /// (recording the joins it lists in `decisions`) or rejects it with the verdict's code.
    pub fn settle_auth(
        &mut self,
        now: Instant,
        verdict: Result<(), CloseCode>,
        decisions: &mut Decisions,
    ) {
        let _ = match verdict {
            Ok(()) => self.accept(now, &mut |event| decisions.record(event)),
            Err(code) => self.reject(code, "authentication failed"),
        };
    }

    /// Settles a join with the application's verdict ([`ServerSession::allow`] or
    /// [`ServerSession::deny`]).
    pub fn settle_join(&mut self, hub: &mut Hub, room: &str, allowed: bool) {
        let _ = if allowed {
            self.allow(hub, room)
        } else {
            self.deny(room)
        };
    }
}
