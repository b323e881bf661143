//! The network side: listener, connections, frames in and out, dispatch, shutdown.

pub mod dispatch;
