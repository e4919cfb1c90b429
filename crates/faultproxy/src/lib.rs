//! A fault-injecting TCP proxy for the end-to-end tests and the swarm demo
//! (`crates/swarm`). It knows nothing of spacelink: it forwards bytes.
//!
//! The kernel on our test machines has no `netem`, so network faults are made
//! in user space: a [`FaultProxy`] listens on `127.0.0.1`, forwards every
//! connection it accepts to an upstream address (the test server), and on the
//! way it can add latency and jitter, limit the bandwidth, swallow every byte
//! (a blackhole), refuse new connections, or cut the live ones.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use spacelink_faultproxy::FaultProxy;
//! # async fn run() -> std::io::Result<()> {
//! let proxy = FaultProxy::start("127.0.0.1:3000".parse().expect("an address")).await?;
//! // connect a client to proxy.url() instead of the server itself,
//! // ... connect, then break the network under the client:
//! proxy.set_latency(Duration::from_millis(200), Duration::from_millis(50));
//! proxy.set_blackhole(true);
//! proxy.cut_all();
//! proxy.heal();
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! * One accept task per proxy and one task per connection, all spawned with
//!   `tokio::spawn` (so the proxy works on the current-thread runtime of
//!   `#[actix::test]` as well as under `#[tokio::test]`).
//! * The faults live in one shared, mutex-protected [`Faults`] value that the
//!   forwarding loops read for every chunk, so a change applies at once to the
//!   connections already open.
//! * Each direction of a connection is a small delay line: a *reader* reads a
//!   chunk, stamps it with the time it is due (`max(previous due, now +
//!   latency ± jitter)`, so a later chunk never overtakes an earlier one) and
//!   queues it; a *writer* sleeps until each chunk is due and writes it,
//!   pacing the writes when the bandwidth is limited.
//! * A blackhole drops chunks (when read, and when due) but closes nothing.
//! * Cuts and the proxy's stop are broadcast on `tokio::sync::watch` channels;
//!   a connection task that sees one sets `SO_LINGER` to zero on both of its
//!   sockets and drops them, so both peers see a reset.
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

/// The largest chunk read from a socket at once.
const CHUNK_BYTES: usize = 16 * 1024;

/// How many chunks a direction holds in flight (its delay line) before the
/// reader waits for the writer.
const QUEUE_CHUNKS: usize = 1024;

/// Under a bandwidth limit, the writes are paced in slices of a twentieth of a
/// second's worth of bytes, so that one large chunk does not arrive as a burst.
const PACING_SLICES_PER_SEC: u64 = 20;

/// A handle to a running fault-injecting proxy.
///
/// Cheap to clone; the proxy stops (no more accepting, every live connection
/// cut) when the last handle is dropped or when [`FaultProxy::stop`] is called.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    inner: Arc<Inner>,
}

/// The faults a proxy applies right now. A clean pipe is `Faults::default()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// One-way delay added to each direction.
    pub latency: Duration,
    /// Each chunk's delay is drawn uniformly from `latency ± jitter` (never below zero).
    pub jitter: Duration,
    /// Bytes per second per direction; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Every byte is read and dropped, in both directions; nothing is closed.
    pub blackhole: bool,
    /// New connections are accepted and closed at once.
    pub refuse: bool,
}

/// What the handles own: dropping the last handle drops this, which stops the proxy.
#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// `true` once the proxy is stopped.
    stop: watch::Sender<bool>,
}

/// What the handles and the proxy's tasks share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bumped by every [`FaultProxy::cut_all`].
    cut: watch::Sender<u64>,
    accepted: AtomicU64,
    refused: AtomicU64,
    live: AtomicUsize,
}

#[derive(Debug)]
struct State {
    faults: Faults,
    /// Draws the jitter.
    rng: SplitMix64,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and forwards every accepted connection to `upstream`
    /// (e.g. `"127.0.0.1:3000"`).
    ///
    /// Must be called inside a tokio runtime (`#[actix::test]` and
    /// `#[tokio::test]` both provide one): the proxy's tasks are spawned with
    /// `tokio::spawn`.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State { faults: Faults::default(), rng: SplitMix64(u64::from(addr.port())) }),
            cut: watch::Sender::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            live: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, upstream, shared.clone(), stopped));
        Ok(FaultProxy { inner: Arc::new(Inner { addr, shared, stop }) })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The proxy as a server URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Adds a one-way delay to each direction: every chunk read is forwarded
    /// `latency ± jitter` (uniformly drawn, never below zero) after it was
    /// read, and never before a chunk read earlier, so the byte order is kept.
    ///
    /// Applies to the chunks read from now on; chunks already in flight keep
    /// the time they were given.
    pub fn set_latency(&self, latency: Duration, jitter: Duration) {
        self.update(|f| {
            f.latency = latency;
            f.jitter = jitter;
        });
    }

    /// Limits each direction to `bytes_per_sec` (`None`: unlimited). Writes
    /// are paced in small slices; there is no burst allowance.
    pub fn set_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.update(|f| f.bandwidth = bytes_per_sec);
    }

    /// Blackhole on: the bytes are read and silently dropped in both
    /// directions (including those in flight), the sockets stay open and
    /// nothing is closed; a half-close (FIN) is swallowed too. Off: new bytes
    /// are forwarded again (the dropped bytes stay dropped).
    pub fn set_blackhole(&self, on: bool) {
        self.update(|f| f.blackhole = on);
    }

    /// Refuse on: new connections are accepted and closed at once (the client
    /// reads EOF, like a server that is going down); the live connections are
    /// not touched. Off: new connections are forwarded again.
    pub fn set_refuse(&self, on: bool) {
        self.update(|f| f.refuse = on);
    }

    /// Cuts every live connection now, abruptly: both its sockets are reset
    /// (`SO_LINGER` zero), so the client and the server each read an error or
    /// EOF. The cut happens as soon as the connection tasks run, i.e. at the
    /// caller's next `.await`. New connections are not affected.
    pub fn cut_all(&self) {
        self.inner.shared.cut.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Back to a clean pipe: no latency, no bandwidth limit, no blackhole, no refusal.
    pub fn heal(&self) {
        self.update(|f| *f = Faults::default());
    }

    /// The faults applied right now.
    pub fn faults(&self) -> Faults {
        self.inner.shared.faults()
    }

    /// Connections accepted so far, refused ones included.
    pub fn accepted(&self) -> u64 {
        self.inner.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections refused so far (accepted and closed at once under [`FaultProxy::set_refuse`]).
    pub fn refused(&self) -> u64 {
        self.inner.shared.refused.load(Ordering::Relaxed)
    }

    /// Connections being forwarded right now.
    pub fn live(&self) -> usize {
        self.inner.shared.live.load(Ordering::Relaxed)
    }

    /// Stops the proxy now, for every handle: the listener is closed and every
    /// live connection is cut. Dropping the last handle does the same.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    fn update(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.inner.shared.lock().faults);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> Faults {
        self.lock().faults
    }

    /// When a chunk read now, after one due at `previous`, is to be written;
    /// `None` if it is to be dropped.
    fn schedule(&self, previous: Instant) -> Option<Instant> {
        let mut state = self.lock();
        if state.faults.blackhole {
            return None;
        }
        let delay = state.delay();
        Some(previous.max(Instant::now() + delay))
    }
}

impl State {
    /// A delay drawn uniformly from `latency ± jitter`, at least zero.
    fn delay(&mut self) -> Duration {
        let Faults { latency, jitter, .. } = self.faults;
        let jitter_nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX / 2);
        if jitter_nanos == 0 {
            return latency;
        }
        let offset = Duration::from_nanos(self.rng.next() % (2 * jitter_nanos + 1));
        (latency + offset).saturating_sub(jitter)
    }
}

/// Counts a connection as live while it exists.
struct LiveGuard(Arc<Shared>);

impl LiveGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.live.fetch_add(1, Ordering::Relaxed);
        LiveGuard(shared)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Completes once the proxy is stopped (explicitly, or its last handle dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stopped as well.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Accepts connections until the proxy stops; the listener is closed on return.
async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => return,
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of file descriptors or an aborted handshake: retry soon.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        if shared.faults().refuse {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        // Subscribed and counted here, not in the task, so that a cut or a
        // `live()` right after the accept already sees this connection.
        let cut = shared.cut.subscribe();
        let live = LiveGuard::new(shared.clone());
        tokio::spawn(serve(client, upstream, live, cut, stop.clone()));
    }
}

/// Forwards one connection until both directions end, it is cut, or the proxy stops.
async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    live: LiveGuard,
    mut cut: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let shared = &*live.0;
    let connected = tokio::select! {
        connected = TcpStream::connect(upstream) => connected.ok(),
        _ = cut.changed() => None,
        () = stopped(&mut stop) => None,
    };
    let Some(mut server) = connected else {
        // The upstream is down (or the connection was cut first): reset the client.
        reset(&[&client]);
        return;
    };
    // No Nagle: the proxy's own delays are the only ones added.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let clean = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let both = async {
            tokio::try_join!(pipe(client_read, server_write, shared), pipe(server_read, client_write, shared))
        };
        tokio::select! {
            ended = both => ended.is_ok(),
            _ = cut.changed() => false,
            () = stopped(&mut stop) => false,
        }
    };
    if !clean {
        reset(&[&client, &server]);
    }
    // Both sockets are closed here, after the resets if any.
}

/// Makes the sockets send a reset rather than a FIN when they are dropped.
fn reset(sockets: &[&TcpStream]) {
    for socket in sockets {
        // `set_linger` is deprecated because a non-zero linger blocks on drop;
        // a zero linger does not, and it works with every tokio 1.x.
        #[allow(deprecated)]
        let _ = socket.set_linger(Some(Duration::ZERO));
    }
}

/// Something read from one side, waiting to be written to the other.
enum Segment {
    /// Bytes to write when due.
    Data { due: Instant, bytes: Vec<u8> },
    /// The reading side was half-closed: shut the writing side down when due.
    Eof { due: Instant },
}

impl Segment {
    fn due(&self) -> Instant {
        match self {
            Segment::Data { due, .. } | Segment::Eof { due } => *due,
        }
    }
}

/// One direction of a connection: reads from `from`, delays, drops or paces as
/// the faults say, and writes to `to`. Ends when the half-close has been
/// forwarded, or with the first error.
async fn pipe<R, W>(from: R, to: W, shared: &Shared) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, line) = mpsc::channel(QUEUE_CHUNKS);
    tokio::try_join!(read_side(from, queue, shared), write_side(line, to, shared))?;
    Ok(())
}

/// Reads chunks, stamps each with the time it is due, and queues them in order.
async fn read_side<R>(mut from: R, queue: mpsc::Sender<Segment>, shared: &Shared) -> io::Result<()>
where
    R: AsyncRead + Unpin,
{
    let mut buffer = vec![0; CHUNK_BYTES];
    let mut last_due = Instant::now();
    loop {
        let n = from.read(&mut buffer).await?;
        let Some(due) = shared.schedule(last_due) else {
            if n == 0 {
                // The half-close fell into the blackhole: this direction goes
                // silent for good, without closing anything.
                std::future::pending::<()>().await;
            }
            continue;
        };
        last_due = due;
        let segment = if n == 0 { Segment::Eof { due } } else { Segment::Data { due, bytes: buffer[..n].to_vec() } };
        if queue.send(segment).await.is_err() || n == 0 {
            // The writer is gone (it failed, and the connection is ending) or the half-close is queued.
            return Ok(());
        }
    }
}

/// Writes each queued chunk when it is due, unless a blackhole has opened since.
async fn write_side<W>(mut line: mpsc::Receiver<Segment>, mut to: W, shared: &Shared) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut next_free = Instant::now();
    while let Some(segment) = line.recv().await {
        sleep_until(segment.due()).await;
        let blackhole = shared.faults().blackhole;
        match segment {
            Segment::Data { .. } if blackhole => {}
            Segment::Data { bytes, .. } => write_paced(&mut to, &bytes, shared, &mut next_free).await?,
            Segment::Eof { .. } if blackhole => std::future::pending::<()>().await,
            Segment::Eof { .. } => {
                to.shutdown().await?;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Writes `bytes`, at no more than the bandwidth limit if there is one: each
/// slice may start only when the previous one has "left the wire" at the
/// limited rate (`next_free`).
async fn write_paced<W>(to: &mut W, bytes: &[u8], shared: &Shared, next_free: &mut Instant) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(rate) = shared.faults().bandwidth else {
            return to.write_all(rest).await;
        };
        let rate = rate.max(1);
        let slice = usize::try_from(rate / PACING_SLICES_PER_SEC).unwrap_or(usize::MAX).clamp(1, rest.len());
        let start = Instant::now().max(*next_free);
        sleep_until(start).await;
        to.write_all(&rest[..slice]).await?;
        *next_free =
            start + Duration::from_nanos(u64::try_from(slice).unwrap_or(u64::MAX).saturating_mul(1_000_000_000) / rate);
        rest = &rest[slice..];
    }
    Ok(())
}

/// A tiny, good-enough generator for the jitter (splitmix64).
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
