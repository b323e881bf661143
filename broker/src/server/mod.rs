//! The network side: listener, connections, frames in and out, dispatch, shutdown.
//!
//! ```text
//! Server (accept loop, connection limit, shutdown)
//!   └─ per connection: FrameReader ─▶ Connection ─▶ Dispatcher::handle ─▶ channels
//!                                        │                                  │
//!                                        └──── Outbox ◀─────────────────────┘
//!                                                 └─▶ Writer (vectored writes) ─▶ socket
//! ```
//!
//! The server knows frames and sockets, nothing about cursors or logs.

mod connection;
mod context;
pub mod dispatch;
mod frame_reader;
mod handshake;
mod linger;
mod listener;
mod refuse;
mod request_metrics;
mod writer;

pub use listener::{RunningServer, Server, ServerError};
