//! Feeds arbitrary bytes to the frame decoder and every body decoder: they may refuse the input,
//! but never panic, never allocate past the frame limit, and never loop.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_protocol::{Delivery, ErrorBody, FrameDecoder, Request, Response};

fuzz_target!(|data: &[u8]| {
    let decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        let _ = Request::decode(frame.opcode, frame.body.clone());
        let _ = Response::decode(frame.opcode, &frame.body);
        let _ = ErrorBody::decode(&frame.body);
        if let Ok(delivery) = Delivery::decode(frame.body.clone()) {
            for record in delivery.records() {
                let _ = sluice_protocol::MessageView::decode(record);
            }
        }
    }
});
