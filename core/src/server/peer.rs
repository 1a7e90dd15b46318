//! Who a connection is, as the application's hooks are told: the peer's address and upgrade
//! headers from the adapter, its identity from its hello.
//!
//! Every adapter hands its hooks the same two types, built here once: [`AuthRequest`] for the
//! authentication hook, [`Peer`] for the room hook. The identity is what the hello said and the
//! authentication hook accepted; until the hello it is client 0 without a token.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;

/// What the authentication hook gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The client's identity from its hello.
    pub client_id: u64,
    /// The token from its hello.
    pub token: Option<String>,
    /// The HTTP headers of the WebSocket upgrade request (cookies, authorization); empty on
    /// transports without one (COBS over TCP).
    pub headers: Vec<(String, String)>,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// Who a connection is, for the room authorisation hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The client's identity.
    pub client_id: u64,
    /// Its token.
    pub token: Option<String>,
    /// Its address.
    pub addr: SocketAddr,
}

impl Peer {
    /// A connection from `addr` that has not said hello yet.
    pub const fn new(addr: SocketAddr) -> Self {
        Peer {
            client_id: 0,
            token: None,
            addr,
        }
    }

    /// The hello of [`Decision::Authenticate`](super::Decision::Authenticate) names the peer;
    /// returns what the authentication hook is asked, with the upgrade's `headers`.
    pub fn authenticating(
        &mut self,
        client_id: u64,
        token: Option<String>,
        headers: &[(String, String)],
    ) -> AuthRequest {
        self.client_id = client_id;
        self.token.clone_from(&token);
        AuthRequest {
            client_id,
            token,
            headers: headers.to_vec(),
            peer: self.addr,
        }
    }
}
