use std::pin::Pin;
use std::task::{Context, Poll};

use sluice_protocol::{Delivery, ErrorBody, ErrorCode, FrameDecoder, Response};
use tokio::sync::mpsc;

use super::*;

/// A sink that records what was written and how many write calls it took.
#[derive(Debug, Default)]
struct Recorder {
    /// Everything written.
    bytes: Vec<u8>,
    /// Calls to `poll_write` / `poll_write_vectored`.
    calls: usize,
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.calls += 1;
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.calls += 1;
        let before = self.bytes.len();
        bufs.iter().for_each(|b| self.bytes.extend_from_slice(b));
        Poll::Ready(Ok(self.bytes.len() - before))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn signals(expected: u64) -> WriterSignals {
    WriterSignals {
        closing: CancellationToken::new(),
        abort: CancellationToken::new(),
        expected: Arc::new(AtomicU64::new(expected)),
        drain_timeout: Duration::from_secs(5),
    }
}

fn reply(correlation_id: u64, result: Result<Response, ErrorBody>) -> Outgoing {
    Outgoing::Reply {
        correlation_id,
        opcode: opcode::ACK,
        result,
    }
}

fn delivery(records: usize) -> Outgoing {
    Outgoing::Delivery(Delivery {
        consumer_id: 3,
        partition: 1,
        delivery_count: 1,
        first_offset: 40,
        timestamp: 5,
        record_count: 1,
        records: Bytes::from(vec![9u8; records]),
    })
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let decoder = FrameDecoder::new(1 << 20);
    std::iter::from_fn(|| decoder.decode(&mut buf).unwrap()).collect()
}

async fn write_all_of(items: Vec<Outgoing>) -> Recorder {
    let (tx, rx) = mpsc::unbounded_channel();
    items.into_iter().for_each(|item| tx.send(item).unwrap());
    drop(tx);
    Writer::new(Recorder::default(), rx)
        .run(signals(0))
        .await
        .unwrap()
}

#[tokio::test]
async fn replies_and_deliveries_become_frames_in_order() {
    let error = ErrorBody::new(ErrorCode::UnknownChannel, "no");
    let items = vec![
        reply(5, Ok(Response::Ok)),
        reply(6, Err(error.clone())),
        delivery(10_000),
        delivery(10),
    ];
    let out = frames(&write_all_of(items).await.bytes);
    assert_eq!(out.len(), 4);
    assert_eq!((out[0].correlation_id, out[0].flags), (5, FLAG_RESPONSE));
    assert_eq!(out[0].body, Response::Ok.encode_body());
    assert_eq!(out[1].flags, FLAG_RESPONSE | FLAG_ERROR);
    assert_eq!(ErrorBody::decode(&out[1].body).unwrap(), error);
    for (frame, len) in out[2..].iter().zip([10_000, 10]) {
        assert_eq!((frame.flags, frame.opcode), (FLAG_PUSH, opcode::DELIVERY));
        let delivery = Delivery::decode(frame.body.clone()).unwrap();
        assert_eq!((delivery.first_offset, delivery.records.len()), (40, len));
    }
}

#[tokio::test]
async fn one_drain_of_many_frames_takes_one_write_call() {
    let mut items: Vec<_> = (0..500).map(|c| reply(c, Ok(Response::Ok))).collect();
    items.extend((0..20).map(|_| delivery(8192)));
    let recorder = write_all_of(items).await;
    assert_eq!(frames(&recorder.bytes).len(), 520);
    assert_eq!(recorder.calls, 1);
}

#[tokio::test]
async fn closing_still_writes_the_replies_due() {
    let (tx, rx) = mpsc::unbounded_channel();
    let signals = signals(2);
    signals.closing.cancel();
    let task = tokio::spawn(Writer::new(Recorder::default(), rx).run(signals));
    tx.send(reply(1, Ok(Response::Ok))).unwrap();
    tokio::task::yield_now().await;
    tx.send(reply(2, Ok(Response::Ok))).unwrap();
    let recorder = task.await.unwrap().unwrap();
    assert_eq!(frames(&recorder.bytes).len(), 2);
}

#[tokio::test]
async fn a_reply_that_never_comes_is_given_up_after_the_drain_timeout() {
    let (_tx, rx) = mpsc::unbounded_channel();
    let signals = WriterSignals {
        drain_timeout: Duration::from_millis(20),
        ..signals(1)
    };
    signals.closing.cancel();
    let recorder = Writer::new(Recorder::default(), rx)
        .run(signals)
        .await
        .unwrap();
    assert!(recorder.bytes.is_empty());
}

#[tokio::test]
async fn abort_stops_the_writer_without_waiting() {
    let (_tx, rx) = mpsc::unbounded_channel();
    let signals = signals(1);
    signals.abort.cancel();
    let recorder = Writer::new(Recorder::default(), rx)
        .run(signals)
        .await
        .unwrap();
    assert_eq!(recorder.calls, 0);
}

#[test]
fn a_partial_write_keeps_the_rest_queued() {
    let (_tx, rx) = mpsc::unbounded_channel();
    let mut writer = Writer::new(Recorder::default(), rx);
    writer
        .chunks
        .extend([Bytes::from_static(b"abc"), Bytes::from_static(b"def")]);
    writer.consume(4);
    assert_eq!(writer.chunks, [Bytes::from_static(b"ef")]);
}
