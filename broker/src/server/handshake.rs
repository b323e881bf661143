//! Version negotiation: what the broker answers to a connection's first frame.
//!
//! Pure logic over the decoded [`Handshake`]: no socket, no clock. Authentication will hook in
//! here (the handshake carries `auth`), which is why it is its own module.

use sluice_protocol::frame::VERSION;
use sluice_protocol::request::Handshake;
use sluice_protocol::response::HandshakeOk;
use sluice_protocol::{ErrorBody, ErrorCode, Request};

/// The broker's name and version, as reported in [`HandshakeOk::broker`].
pub fn broker_name() -> String {
    format!("sluice {}", env!("CARGO_PKG_VERSION"))
}

/// The answer to a connection's first request.
///
/// # Errors
/// [`ErrorCode::HandshakeRequired`] when the first request is not a handshake, and
/// [`ErrorCode::UnsupportedVersion`] when the client's version range excludes ours. Either way
/// the connection is closed after the error is sent.
pub fn negotiate(
    first: &Request,
    max_frame: usize,
    max_batch: usize,
) -> Result<HandshakeOk, ErrorBody> {
    let Request::Handshake(handshake) = first else {
        return Err(ErrorBody::new(
            ErrorCode::HandshakeRequired,
            "the first frame of a connection must be a handshake",
        ));
    };
    let version = choose_version(handshake)?;
    Ok(HandshakeOk {
        version,
        broker: broker_name(),
        max_frame: u32::try_from(max_frame).unwrap_or(u32::MAX),
        max_batch: u32::try_from(max_batch).unwrap_or(u32::MAX),
    })
}

fn choose_version(handshake: &Handshake) -> Result<u8, ErrorBody> {
    if (handshake.min_version..=handshake.max_version).contains(&VERSION) {
        return Ok(VERSION);
    }
    Err(ErrorBody::new(
        ErrorCode::UnsupportedVersion,
        format!(
            "client speaks versions {}..={}, this broker speaks {VERSION}",
            handshake.min_version, handshake.max_version
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(min_version: u8, max_version: u8) -> Request {
        Request::Handshake(Handshake {
            min_version,
            max_version,
            client: "test".into(),
            auth: None,
        })
    }

    #[test]
    fn a_range_containing_our_version_gets_it() {
        let ok = negotiate(&hello(1, 3), 4096, 2048).unwrap();
        assert_eq!((ok.version, ok.max_frame, ok.max_batch), (1, 4096, 2048));
        assert!(ok.broker.starts_with("sluice "));
    }

    #[test]
    fn a_range_without_our_version_is_refused() {
        let err = negotiate(&hello(2, 4), 4096, 2048).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedVersion);
    }

    #[test]
    fn any_other_first_request_requires_a_handshake() {
        let err = negotiate(&Request::ListChannels, 4096, 2048).unwrap_err();
        assert_eq!(err.code, ErrorCode::HandshakeRequired);
    }
}
