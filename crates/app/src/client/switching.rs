//! Work the client does for the game on its actors' thread, answered later:
//! [`Switching`] (a profile switch, [`Client::switch_to`](super::Client::switch_to))
//! and [`CacheSaving`] (a save of the cache on disk,
//! [`Client::save_cache`](super::Client::save_cache)), each awaited or polled
//! each frame.

use crate::disk_cache::DiskCacheEvent;
use crate::switch::SwitchError;

/// A switch under way ([`Client::switch_to`](super::Client::switch_to)): await it, or poll it each frame.
pub type Switching = Pending<Result<(), SwitchError>>;

/// A save of the cache under way ([`Client::save_cache`](super::Client::save_cache)):
/// await it, or poll it each frame.
pub type CacheSaving = Pending<DiskCacheEvent>;

/// What an answer is when none can come (the client is gone).
pub trait Unanswered {
    /// The answer that stands for none.
    fn unanswered() -> Self;
}

impl Unanswered for Result<(), SwitchError> {
    fn unanswered() -> Self {
        Err(SwitchError::ClientGone)
    }
}

impl Unanswered for DiskCacheEvent {
    fn unanswered() -> Self {
        DiskCacheEvent::SaveFailed { error: "the client is gone or keeps no cache on disk".into() }
    }
}

/// An answer to come from the client's actors' thread: await it, or poll it each frame.
#[derive(Debug)]
pub struct Pending<T> {
    pub(super) answer: Option<tokio::sync::oneshot::Receiver<T>>,
}

impl<T: Unanswered> Pending<T> {
    /// The answer, once there is one (`None` meanwhile, and after it was taken).
    pub fn try_result(&mut self) -> Option<T> {
        let Some(rx) = &mut self.answer else {
            return None;
        };
        match rx.try_recv() {
            Ok(answer) => {
                self.answer = None;
                Some(answer)
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => None,
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                self.answer = None;
                Some(T::unanswered())
            }
        }
    }
}

impl<T: Unanswered> std::future::Future for Pending<T> {
    type Output = T;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let Some(rx) = &mut self.answer else {
            return std::task::Poll::Ready(T::unanswered());
        };
        std::pin::Pin::new(rx).poll(cx).map(|answer| {
            self.answer = None;
            answer.unwrap_or_else(|_| T::unanswered())
        })
    }
}
