//! An in-test fake broker speaking the real protocol on 127.0.0.1:0: enough of a queue to test
//! the client's framing, pipelining, batching, acks, reconnects, producer sessions and publish
//! outcomes without the real broker.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use sluice_protocol::frame::FLAG_PUSH;
use sluice_protocol::request::opcode;
use sluice_protocol::request::Publish;
use sluice_protocol::response::{HandshakeOk, ProducerSession, PublishAck, Redriven, Subscribed};
use sluice_protocol::types::{
    ChannelKind, ChannelMeta, DuplicateRun, InvalidOutcome, PartitionMeta, StoredRun,
};
use sluice_protocol::{
    Delivery, ErrorBody, ErrorCode, Frame, FrameDecoder, MessageView, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the fake remembers.
#[derive(Default)]
pub struct State {
    /// Every request received, in order.
    pub requests: Vec<Request>,
    /// Message records of the single delivered queue (publishes to any partition land here).
    pub records: Vec<Bytes>,
    /// Acked offsets.
    pub acked: BTreeSet<u64>,
    /// Next offset to deliver.
    pub cursor: u64,
    /// Drop the connection instead of answering the next publish.
    pub drop_next_publish: bool,
    /// Store the next publish, then drop the connection instead of answering (a lost ack).
    pub lose_next_ack: bool,
    /// Producer ids handed out so far.
    pub producers: u64,
    /// First offset stored per (producer id, partition, base sequence): the producer dedupe.
    pub sequences: HashMap<(u64, u32, u32), u64>,
    /// Where messages with the payload `bad` go; `None`: they are refused.
    pub invalid_channel: Option<String>,
    /// Answer the handshake as a broker from before `max_batch` was told (0: unknown).
    pub no_batch_limit: bool,
}

/// The frame limit the fake tells at the handshake.
pub const FAKE_MAX_FRAME: u32 = 16 << 20;
/// The batch limit the fake tells at the handshake, unless [`State::no_batch_limit`].
pub const FAKE_MAX_BATCH: u32 = 8 << 20;

/// The fake's whole contract: the payload `bad` is not valid.
pub const BAD: &[u8] = b"bad";

/// Handle to a running fake broker.
pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    /// Wakes connections to push deliveries.
    changed: Arc<Notify>,
    /// Cancelling it closes every open connection.
    kill: Arc<Mutex<CancellationToken>>,
}

impl Fake {
    pub async fn start(partitions: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Self {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            changed: Arc::default(),
            kill: Arc::default(),
        };
        let (state, changed, kill) = (fake.state.clone(), fake.changed.clone(), fake.kill.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let conn = Conn {
                    state: state.clone(),
                    changed: changed.clone(),
                    partitions,
                    consumer: None,
                };
                let token = kill.lock().unwrap().clone();
                tokio::spawn(conn.run(socket, token));
            }
        });
        fake
    }

    /// Closes every open connection (as a crashing broker would).
    pub fn kill_connections(&self) {
        let mut kill = self.kill.lock().unwrap();
        kill.cancel();
        *kill = CancellationToken::new();
    }

    pub fn requests(&self, op: u16) -> Vec<Request> {
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|r| r.opcode() == op)
            .cloned()
            .collect()
    }
}

impl State {
    /// Stores a batch's valid messages, unless its producer sequence was seen before.
    fn publish(&mut self, p: &Publish) -> PublishAck {
        let partition = p.partition;
        let session = (p.batch.producer_id(), partition, p.batch.base_sequence());
        if let Some(&first) = self.sequences.get(&session) {
            let duplicates = (0..p.batch.record_count())
                .map(|index| DuplicateRun {
                    index,
                    offset: first + u64::from(index),
                })
                .collect();
            return PublishAck {
                partition,
                duplicates,
                ..PublishAck::default()
            };
        }
        let mut ack = PublishAck {
            partition,
            ..PublishAck::default()
        };
        for (index, record) in (0u32..).zip(p.batch.raw_records()) {
            let view = MessageView::decode(record.clone()).expect("a valid record");
            if view.payload == BAD {
                ack.invalid.push(InvalidOutcome {
                    index,
                    reason: "payload is not json".into(),
                    routed_to: self.invalid_channel.clone(),
                });
                continue;
            }
            let offset = self.records.len() as u64;
            self.records.push(record);
            ack.stored.push(StoredRun {
                index,
                count: 1,
                offset,
            });
        }
        if session.0 != 0 {
            let first = ack.stored.first().map_or(0, |r| r.offset);
            self.sequences.insert(session, first);
        }
        ack
    }
}

/// One accepted connection.
struct Conn {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    partitions: u32,
    /// The consumer attached here: (id, credit left).
    consumer: Option<(u64, u32)>,
}

impl Conn {
    async fn run(mut self, mut socket: TcpStream, kill: CancellationToken) {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        loop {
            while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                let mut out = BytesMut::new();
                if !self.answer(frame, &mut out) {
                    return;
                }
                self.pump(&mut out);
                if socket.write_all(&out).await.is_err() {
                    return;
                }
            }
            let changed = self.changed.clone();
            tokio::select! {
                _ = kill.cancelled() => return,
                read = socket.read_buf(&mut buf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return;
                    }
                }
                _ = changed.notified() => {
                    let mut out = BytesMut::new();
                    self.pump(&mut out);
                    if socket.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Writes the answer to `frame` into `out`; false to drop the connection.
    fn answer(&mut self, frame: Frame, out: &mut BytesMut) -> bool {
        let op = frame.opcode;
        let request = Request::decode(op, frame.body).expect("client sent a valid request");
        self.state.lock().unwrap().requests.push(request.clone());
        let result = self.handle(request);
        let reply = match result {
            Some(Ok(response)) => Frame::response(op, frame.correlation_id, response.encode_body()),
            Some(Err(error)) => Frame {
                flags: sluice_protocol::frame::FLAG_RESPONSE | sluice_protocol::frame::FLAG_ERROR,
                ..Frame::response(op, frame.correlation_id, error.encode())
            },
            None => return false,
        };
        reply.encode(out);
        true
    }

    fn handle(&mut self, request: Request) -> Option<Result<Response, ErrorBody>> {
        let mut state = self.state.lock().unwrap();
        Some(match request {
            Request::Handshake(_) => Ok(Response::Handshake(HandshakeOk {
                version: 1,
                broker: "fake".into(),
                max_frame: FAKE_MAX_FRAME,
                max_batch: if state.no_batch_limit {
                    0
                } else {
                    FAKE_MAX_BATCH
                },
            })),
            Request::Metadata(m) => Ok(Response::Metadata(
                m.channels.iter().map(|name| self.meta(name)).collect(),
            )),
            Request::CreateChannel(c) if c.name == "exists" => {
                Err(ErrorBody::new(ErrorCode::ChannelExists, "channel exists"))
            }
            Request::Publish(p) => {
                if std::mem::take(&mut state.drop_next_publish) {
                    return None;
                }
                let ack = state.publish(&p);
                self.changed.notify_waiters();
                if std::mem::take(&mut state.lose_next_ack) {
                    return None;
                }
                Ok(Response::Published(ack))
            }
            Request::InitProducer(_) => {
                state.producers += 1;
                Ok(Response::ProducerSession(ProducerSession {
                    producer_id: state.producers,
                    epoch: 0,
                }))
            }
            Request::Redrive(r) => Ok(Response::Redriven(Redriven {
                count: r.count.unwrap_or(3),
            })),
            Request::Subscribe(s) => {
                self.consumer = Some((s.consumer_id, s.credit));
                state.cursor = (0..).find(|o| !state.acked.contains(o)).unwrap_or(0);
                Ok(Response::Subscribed(Subscribed {
                    subscription: "sub".into(),
                    partitions: vec![],
                }))
            }
            Request::Credit(c) => {
                if let Some((_, credit)) = &mut self.consumer {
                    *credit += c.credit;
                }
                Ok(Response::Ok)
            }
            Request::Ack(a) => {
                for (from, to) in a.ranges {
                    state.acked.extend(from..to);
                }
                Ok(Response::Ok)
            }
            _ => Ok(Response::Ok),
        })
    }

    fn meta(&self, name: &str) -> ChannelMeta {
        ChannelMeta {
            name: name.into(),
            kind: ChannelKind::Queue,
            partitions: (0..self.partitions)
                .map(|id| PartitionMeta {
                    id,
                    leader: "here".into(),
                })
                .collect(),
        }
    }

    /// Pushes undelivered records to this connection's consumer, within its credit.
    fn pump(&mut self, out: &mut BytesMut) {
        let Some((consumer_id, credit)) = &mut self.consumer else {
            return;
        };
        let mut state = self.state.lock().unwrap();
        let first = state.cursor;
        let end = (state.records.len() as u64).min(first + u64::from(*credit));
        if end <= first {
            return;
        }
        let mut records = BytesMut::new();
        for record in &state.records[first as usize..end as usize] {
            records.put_u32_le(record.len() as u32);
            records.put_slice(record);
        }
        let delivery = Delivery {
            consumer_id: *consumer_id,
            partition: 0,
            delivery_count: 1,
            first_offset: first,
            timestamp: 0,
            record_count: (end - first) as u32,
            records: records.freeze(),
        };
        *credit -= (end - first) as u32;
        state.cursor = end;
        let mut body = BytesMut::from(&delivery.encode_head()[..]);
        body.extend_from_slice(&delivery.records);
        let frame = Frame {
            flags: FLAG_PUSH,
            ..Frame::request(opcode::DELIVERY, 0, body.freeze())
        };
        frame.encode(out);
    }
}
