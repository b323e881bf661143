//! Closing a socket without losing our last frames.
//!
//! Closing a TCP socket that still has unread input makes the kernel send a reset, and a reset
//! can destroy data the peer has not read yet: the error frame that explains why we close. So we
//! shut our sending side down first, then read and discard until the peer closes, goes quiet,
//! or a bound is reached. Knows sockets only.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::timeout;

/// Longest wait for the peer to close after we did.
const LINGER: Duration = Duration::from_secs(1);
/// A peer that sends nothing for this long has nothing unread left to cause a reset.
const LINGER_QUIET: Duration = Duration::from_millis(100);
/// Most bytes read and discarded while lingering.
const LINGER_MAX_BYTES: usize = 1 << 20;

/// Shuts our side down and drains the peer's input (bounded) before the socket is dropped.
pub async fn linger_close<R: AsyncRead + Unpin>(mut read: R, mut write: OwnedWriteHalf) {
    if write.shutdown().await.is_err() {
        return;
    }
    let discard = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0;
        while let Ok(Ok(n @ 1..)) = timeout(LINGER_QUIET, read.read(&mut buf)).await {
            total += n;
            if total > LINGER_MAX_BYTES {
                return;
            }
        }
    };
    let _ = timeout(LINGER, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn the_last_frame_arrives_even_when_the_peer_sent_input_we_never_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(&vec![0xAB; 256 * 1024]).await.unwrap();
        let (read, mut write) = server.into_split();
        write.write_all(b"last words").await.unwrap();
        let closing = tokio::spawn(linger_close(read, write));
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"last words");
        drop(client);
        closing.await.unwrap();
    }
}
