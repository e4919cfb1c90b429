//! Self-tests of the fault-injecting proxy, against a
//! local echo server (no SpacetimeDB needed). The timing checks are loose lower
//! bounds: they prove that a fault is applied, not how fast anything is.
#![allow(clippy::unwrap_used)]

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use spacelink_faultproxy::{FaultProxy, Faults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest wait for anything that is expected to happen.
const PATIENCE: Duration = Duration::from_secs(5);

/// Starts an echo server on 127.0.0.1: it writes back every byte it reads, and
/// closes its side when the client closes its own.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    addr
}

/// An echo server behind a fresh proxy, and a client connected through it.
async fn setup() -> (FaultProxy, TcpStream) {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let client = connect(&proxy).await;
    (proxy, client)
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    let client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.set_nodelay(true).unwrap();
    client
}

/// Reads exactly `n` bytes, failing the test after [`PATIENCE`].
async fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buffer = vec![0; n];
    tokio::time::timeout(PATIENCE, client.read_exact(&mut buffer)).await.expect("timed out reading").unwrap();
    buffer
}

/// Writes `message` and reads it back; returns how long the round trip took.
async fn round_trip(client: &mut TcpStream, message: &[u8]) -> Duration {
    let since = Instant::now();
    client.write_all(message).await.unwrap();
    assert_eq!(read_n(client, message.len()).await, message);
    since.elapsed()
}

/// What one read returns within `wait`: `None` if it timed out.
async fn read_within(client: &mut TcpStream, wait: Duration) -> Option<io::Result<usize>> {
    let mut buffer = [0; 64];
    tokio::time::timeout(wait, client.read(&mut buffer)).await.ok()
}

/// Waits until `condition` holds, failing the test after [`PATIENCE`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let since = Instant::now();
    while !condition() {
        assert!(since.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn bytes_pass_through_unchanged_and_in_order() {
    let (proxy, client) = setup().await;
    assert_eq!(proxy.url(), format!("http://127.0.0.1:{}", proxy.addr().port()));
    let sent: Vec<u8> = (0..6000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut read, mut write) = client.into_split();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        for chunk in to_send.chunks(1000) {
            write.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The half-close travels through the proxy and the echo server closes in turn.
        write.shutdown().await.unwrap();
    });
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, read.read_to_end(&mut received)).await.unwrap().unwrap();
    writer.await.unwrap();
    assert_eq!(received, sent);
    assert_eq!(proxy.accepted(), 1);
    eventually("the connection to end", || proxy.live() == 0).await;
}

#[tokio::test]
async fn latency_delays_each_direction_of_an_open_connection() {
    let (proxy, mut client) = setup().await;
    round_trip(&mut client, b"warm up").await;
    proxy.set_latency(Duration::from_millis(200), Duration::ZERO);
    assert_eq!(proxy.faults().latency, Duration::from_millis(200));
    let delayed = round_trip(&mut client, b"ping").await;
    assert!(delayed >= Duration::from_millis(395), "a 200 ms one-way latency gave a {delayed:?} round trip");
    proxy.heal();
    assert_eq!(proxy.faults(), Faults::default());
    let healed = round_trip(&mut client, b"pong").await;
    assert!(healed < delayed, "healed round trip {healed:?} not faster than {delayed:?}");
}

#[actix::test]
async fn jitter_never_reorders_chunks() {
    let (proxy, client) = setup().await;
    // A jitter ten times the gap between chunks would reorder them if nothing kept the order.
    proxy.set_latency(Duration::from_millis(30), Duration::from_millis(25));
    let chunks: Vec<Vec<u8>> = (0..50).map(|i| format!("<{i:03}>").into_bytes()).collect();
    let expected = chunks.concat();
    let (mut read, mut write) = client.into_split();
    let writer = tokio::spawn(async move {
        for chunk in chunks {
            write.write_all(&chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        write
    });
    let mut received = vec![0; expected.len()];
    tokio::time::timeout(PATIENCE, read.read_exact(&mut received)).await.unwrap().unwrap();
    let _write = writer.await.unwrap();
    assert_eq!(String::from_utf8_lossy(&received), String::from_utf8_lossy(&expected));
}

#[tokio::test]
async fn blackhole_drops_bytes_but_keeps_the_socket_open_until_healed() {
    let (proxy, mut client) = setup().await;
    round_trip(&mut client, b"before").await;
    proxy.set_blackhole(true);
    client.write_all(b"lost").await.unwrap();
    // A timeout, not an EOF (Ok(0)) nor an error: the socket is still open.
    assert!(
        read_within(&mut client, Duration::from_millis(500)).await.is_none(),
        "something came out of the blackhole"
    );
    assert_eq!(proxy.live(), 1);
    proxy.heal();
    // Only the new bytes come back: the dropped ones stay dropped.
    round_trip(&mut client, b"found").await;
    assert!(read_within(&mut client, Duration::from_millis(100)).await.is_none(), "dropped bytes came back");
}

#[tokio::test]
async fn cut_all_closes_live_connections_at_once_but_not_new_ones() {
    let (proxy, mut client) = setup().await;
    round_trip(&mut client, b"hello").await;
    assert_eq!(proxy.live(), 1);
    let since = Instant::now();
    proxy.cut_all();
    match read_within(&mut client, Duration::from_secs(1)).await {
        Some(Ok(0) | Err(_)) => {}
        other => panic!("the cut connection read {other:?}"),
    }
    assert!(since.elapsed() < Duration::from_secs(1));
    eventually("the cut connection to be gone", || proxy.live() == 0).await;
    let mut again = connect(&proxy).await;
    round_trip(&mut again, b"again").await;
    assert_eq!(proxy.accepted(), 2);
}

#[tokio::test]
async fn refuse_closes_new_connections_and_spares_live_ones() {
    let (proxy, mut live) = setup().await;
    round_trip(&mut live, b"live").await;
    proxy.set_refuse(true);
    let mut refused = connect(&proxy).await;
    match read_within(&mut refused, Duration::from_secs(1)).await {
        Some(Ok(0) | Err(_)) => {}
        other => panic!("the refused connection read {other:?}"),
    }
    assert_eq!((proxy.accepted(), proxy.refused()), (2, 1));
    round_trip(&mut live, b"still live").await;
    proxy.set_refuse(false);
    let mut welcome = connect(&proxy).await;
    round_trip(&mut welcome, b"welcome").await;
    assert_eq!(proxy.live(), 2);
}

#[tokio::test]
async fn bandwidth_limit_paces_the_bytes() {
    let (proxy, client) = setup().await;
    proxy.set_bandwidth(Some(10 * 1024));
    let sent = vec![42u8; 20 * 1024];
    let since = Instant::now();
    let (mut read, mut write) = client.into_split();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        write.write_all(&to_send).await.unwrap();
        write
    });
    let mut received = vec![0; sent.len()];
    tokio::time::timeout(PATIENCE, read.read_exact(&mut received)).await.unwrap().unwrap();
    let elapsed = since.elapsed();
    let _write = writer.await.unwrap();
    assert_eq!(received, sent);
    assert!(elapsed >= Duration::from_millis(1500), "20 KB at 10 KB/s took {elapsed:?}");
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_proxy() {
    let (proxy, mut client) = setup().await;
    let addr = proxy.addr();
    let other = proxy.clone();
    drop(proxy);
    // Another handle keeps it running.
    round_trip(&mut client, b"still up").await;
    drop(other);
    match read_within(&mut client, Duration::from_secs(1)).await {
        Some(Ok(0) | Err(_)) => {}
        other => panic!("a connection of the stopped proxy read {other:?}"),
    }
    let since = Instant::now();
    while TcpStream::connect(addr).await.is_ok() {
        assert!(since.elapsed() < PATIENCE, "the stopped proxy still accepts connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
