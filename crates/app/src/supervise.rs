//! How the tree keeps its children alive, and how it stops them for good.
//!
//! Each child runs inside a [`Supervise`] future instead of actix's
//! `Supervisor`: when the actor stops (the failure event: actix restarts only
//! stopped actors, a panic is not one), the same actor value is restarted in
//! the same context, so its mailbox, its address and every handle to it stay
//! valid and what it holds survives (the sync actor's cache and query sets,
//! the reducer client's queue and waiting callers). Its [`RestartPolicy`]
//! says how soon, and how many restarts in a window are tolerated before
//! the tree gives the child up (logged at error level and counted).
//!
//! Unlike actix's `Supervisor`, which restarts a stopped actor as long as any
//! address of it exists (so a connection told to shut down came back idle),
//! nothing restarts once the tree's [`StopFlag`] is raised: `shutdown` stops
//! every child for good.
//!
//! Metrics: `spacelink_supervisor_restarts_total{child}` and
//! `spacelink_supervisor_given_up_total{child}`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use actix::dev::ContextFut;
use actix::prelude::*;

/// How a child is restarted after it stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// How long after stopping it starts again (default: 100 ms; the
    /// connection: 0, its own retry policy spaces its reconnections).
    pub delay: Duration,
    /// At most this many restarts within [`window`](Self::window) (default 10;
    /// the connection: unlimited), then the child is given up.
    pub max_restarts: Option<u32>,
    /// The window of `max_restarts` (default: 60 s).
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self { delay: Duration::from_millis(100), max_restarts: Some(10), window: Duration::from_secs(60) }
    }
}

impl RestartPolicy {
    /// Restarted at once, always (the connection: a restart is its reconnection).
    pub fn always() -> Self {
        Self { delay: Duration::ZERO, max_restarts: None, window: Duration::from_secs(60) }
    }
}

/// The restart policy of each child of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisionConfig {
    /// The connection (default: [`RestartPolicy::always`]).
    pub connection: RestartPolicy,
    /// State sync (default: [`RestartPolicy::default`]).
    pub sync: RestartPolicy,
    /// The reducer client (default: [`RestartPolicy::default`]).
    pub reducers: RestartPolicy,
    /// Authentication (default: [`RestartPolicy::default`]).
    pub auth: RestartPolicy,
    /// The performance monitor (default: [`RestartPolicy::default`]).
    pub telemetry: RestartPolicy,
    /// Each prediction started with `Client::predict` (default: [`RestartPolicy::default`]).
    pub prediction: RestartPolicy,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            connection: RestartPolicy::always(),
            sync: RestartPolicy::default(),
            reducers: RestartPolicy::default(),
            auth: RestartPolicy::default(),
            telemetry: RestartPolicy::default(),
            prediction: RestartPolicy::default(),
        }
    }
}

/// A child of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Child {
    /// The connection actor.
    Connection,
    /// The state sync actor.
    Sync,
    /// The reducer client actor.
    Reducers,
    /// The auth actor.
    Auth,
    /// The performance monitor.
    Telemetry,
    /// The predictions started with `Client::predict` (all of them: their
    /// restarts add up, `fail_child` stops each).
    Prediction,
}

/// Raised once by `shutdown`: no child restarts after it, and the children
/// without a shutdown message of their own are stopped.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopFlag(Arc<StopInner>);

#[derive(Debug, Default)]
struct StopInner {
    raised: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl StopFlag {
    pub(crate) fn raise(&self) {
        self.0.raised.store(true, Ordering::SeqCst);
        for waker in self.0.wakers.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            waker.wake();
        }
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::SeqCst)
    }

    /// Resolves once the flag is up.
    pub(crate) async fn raised(&self) {
        std::future::poll_fn(|cx| {
            if !self.is_raised() {
                self.register(cx.waker());
            }
            if self.is_raised() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }

    fn register(&self, waker: &Waker) {
        let mut wakers = self.0.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }
}

/// One child's controls and counts, shared with the tree.
#[derive(Debug, Default)]
pub(crate) struct ChildControl {
    kill: AtomicBool,
    waker: Mutex<Option<Waker>>,
    restarts: AtomicU32,
    given_up: AtomicBool,
}

impl ChildControl {
    /// Stops the actor as a failure would (its policy then restarts it).
    pub(crate) fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            waker.wake();
        }
    }

    /// How many times it was restarted.
    pub(crate) fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Whether the tree gave it up.
    pub(crate) fn given_up(&self) -> bool {
        self.given_up.load(Ordering::SeqCst)
    }
}

/// Which stop the child takes at `shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnShutdown {
    /// It gets a shutdown message of its own and stops itself (connection, reducers).
    StopsItself,
    /// It is stopped by its supervisor (sync, auth: no shutdown message).
    Stopped,
}

/// Runs `actor` in `ctx` under `policy`, on the current arbiter.
pub(crate) fn start<A>(
    ctx: Context<A>,
    actor: A,
    child: &'static str,
    policy: RestartPolicy,
    stop: StopFlag,
    on_shutdown: OnShutdown,
) -> Arc<ChildControl>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    let control = Arc::new(ChildControl::default());
    start_with(ctx, actor, child, policy, stop, on_shutdown, control.clone());
    control
}

/// Like [`start`], with its control made beforehand (for a child started on
/// another arbiter, whose control the tree needs at once).
pub(crate) fn start_with<A>(
    ctx: Context<A>,
    actor: A,
    child: &'static str,
    policy: RestartPolicy,
    stop: StopFlag,
    on_shutdown: OnShutdown,
    control: Arc<ChildControl>,
) where
    A: Actor<Context = Context<A>> + Supervised,
{
    actix::spawn(Supervise {
        fut: ctx.into_future(actor),
        child,
        policy,
        stop,
        on_shutdown,
        control,
        restarts: VecDeque::new(),
        delay: None,
        stopping: false,
    });
}

/// The supervising future of one child.
struct Supervise<A: Actor<Context = Context<A>>> {
    fut: ContextFut<A, Context<A>>,
    child: &'static str,
    policy: RestartPolicy,
    stop: StopFlag,
    on_shutdown: OnShutdown,
    control: Arc<ChildControl>,
    restarts: VecDeque<Instant>,
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
    stopping: bool,
}

impl<A> Supervise<A>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    /// The actor stopped: may it start again?
    fn may_restart(&mut self) -> bool {
        if self.stop.is_raised() {
            return false;
        }
        if let Some(max) = self.policy.max_restarts {
            let now = Instant::now();
            while self.restarts.front().is_some_and(|t| now.duration_since(*t) > self.policy.window) {
                self.restarts.pop_front();
            }
            if self.restarts.len() >= max as usize {
                metrics::counter!(crate::connection::metric_names::SUPERVISOR_GIVEN_UP, "child" => self.child)
                    .increment(1);
                tracing::error!(
                    child = self.child,
                    restarts = self.restarts.len(),
                    window = ?self.policy.window,
                    "a child of the tree keeps stopping: given up"
                );
                self.control.given_up.store(true, Ordering::SeqCst);
                return false;
            }
            self.restarts.push_back(now);
        }
        true
    }

    fn restart(&mut self) -> bool {
        if self.stop.is_raised() || !self.fut.restart() {
            return false;
        }
        self.control.restarts.fetch_add(1, Ordering::SeqCst);
        metrics::counter!(crate::connection::metric_names::SUPERVISOR_RESTARTS, "child" => self.child).increment(1);
        tracing::info!(child = self.child, "restarted a child of the tree");
        true
    }
}

impl<A> Future for Supervise<A>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.stop.register(cx.waker());
        *this.control.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        loop {
            if let Some(delay) = &mut this.delay {
                if delay.as_mut().poll(cx).is_pending() && !this.stop.is_raised() {
                    return Poll::Pending;
                }
                this.delay = None;
                if !this.restart() {
                    return Poll::Ready(());
                }
            }
            let shutting_down = this.stop.is_raised() && this.on_shutdown == OnShutdown::Stopped;
            if (this.control.kill.swap(false, Ordering::SeqCst) || shutting_down) && !this.stopping {
                this.stopping = true;
                this.fut.ctx().stop();
            }
            match Pin::new(&mut this.fut).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    this.stopping = false;
                    if !this.may_restart() {
                        return Poll::Ready(());
                    }
                    if this.policy.delay.is_zero() {
                        if !this.restart() {
                            return Poll::Ready(());
                        }
                    } else {
                        this.delay = Some(Box::pin(tokio::time::sleep(this.policy.delay)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An actor that counts its starts and keeps a value across restarts.
    struct Counter {
        starts: Arc<AtomicU32>,
        kept: u32,
    }

    impl Actor for Counter {
        type Context = Context<Self>;
        fn started(&mut self, _: &mut Self::Context) {
            self.starts.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Supervised for Counter {}

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Bump;

    impl Handler<Bump> for Counter {
        type Result = u32;
        fn handle(&mut self, _: Bump, _: &mut Self::Context) -> u32 {
            self.kept += 1;
            self.kept
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Stop;

    impl Handler<Stop> for Counter {
        type Result = ();
        fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
            ctx.stop();
        }
    }

    fn counter(
        policy: RestartPolicy,
        stop: &StopFlag,
        on: OnShutdown,
    ) -> (Addr<Counter>, Arc<AtomicU32>, Arc<ChildControl>) {
        let starts = Arc::new(AtomicU32::new(0));
        let ctx = Context::new();
        let addr = ctx.address();
        let control = start(ctx, Counter { starts: starts.clone(), kept: 0 }, "test", policy, stop.clone(), on);
        (addr, starts, control)
    }

    #[actix::test(start_paused = true)]
    async fn a_killed_child_comes_back_with_its_state_and_address() {
        let stop = StopFlag::default();
        let (addr, starts, control) = counter(RestartPolicy::default(), &stop, OnShutdown::StopsItself);
        assert_eq!(addr.send(Bump).await.unwrap(), 1);
        control.kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(control.restarts(), 1);
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        assert_eq!(addr.send(Bump).await.unwrap(), 2, "the same actor value, the same address");
    }

    #[actix::test(start_paused = true)]
    async fn a_child_that_keeps_stopping_is_given_up_by_its_policy() {
        let stop = StopFlag::default();
        let policy =
            RestartPolicy { delay: Duration::from_millis(10), max_restarts: Some(3), window: Duration::from_secs(60) };
        let (addr, _, control) = counter(policy, &stop, OnShutdown::StopsItself);
        for _ in 0..4 {
            let _ = addr.send(Stop).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(control.restarts(), 3);
        assert!(control.given_up());
        assert!(addr.send(Bump).await.is_err(), "given up: gone");
    }

    #[actix::test(start_paused = true)]
    async fn after_the_stop_flag_nothing_restarts_and_silent_children_are_stopped() {
        let stop = StopFlag::default();
        let (own, _, own_control) = counter(RestartPolicy::always(), &stop, OnShutdown::StopsItself);
        let (silent, _, silent_control) = counter(RestartPolicy::always(), &stop, OnShutdown::Stopped);
        stop.raise();
        own.do_send(Stop);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(own.send(Bump).await.is_err(), "stopped itself, not restarted");
        assert!(silent.send(Bump).await.is_err(), "stopped by its supervisor");
        assert_eq!((own_control.restarts(), silent_control.restarts()), (0, 0));
    }
}
