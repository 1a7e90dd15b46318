//! The browser client, shipped in this crate: `eventwire.js`, one dependency-free ES module
//! that speaks the JSON subprotocol (`docs/PROTOCOL.md`), and its TypeScript declarations.
//! The sources are in the crate's `js/` folder (an npm package too: `npm install
//! path/to/adapter-tokio/js`); these constants embed them so a server can hand them to
//! browsers without a build step: [`ServerConfig::serve_client`](crate::ServerConfig::serve_client)
//! on the standalone server, `EventwireService::client_route` with the `axum` feature.
//!
//! The client is served with `Access-Control-Allow-Origin: *`: it is a public file, and a page
//! on another origin needs that to import it as a module.

/// The client, `eventwire.js`.
pub const CLIENT_JS: &str = include_str!("../js/eventwire.js");

/// Its TypeScript declarations, `eventwire.d.ts`.
pub const CLIENT_DTS: &str = include_str!("../js/eventwire.d.ts");

/// The content type of [`CLIENT_JS`].
pub const JS_CONTENT_TYPE: &str = "text/javascript; charset=utf-8";

/// The content type of [`CLIENT_DTS`].
pub const DTS_CONTENT_TYPE: &str = "application/typescript; charset=utf-8";
