//! [`Switching`]: a profile switch under way ([`Client::switch_to`](super::Client::switch_to)),
//! awaited or polled each frame.

use crate::switch::SwitchError;

/// A switch under way ([`Client::switch_to`](super::Client::switch_to)): await it, or poll it each frame.
#[derive(Debug)]
pub struct Switching {
    pub(super) answer: Option<tokio::sync::oneshot::Receiver<Result<(), SwitchError>>>,
}

impl Switching {
    /// The answer, once there is one (`None` meanwhile, and after it was taken).
    pub fn try_result(&mut self) -> Option<Result<(), SwitchError>> {
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
                Some(Err(SwitchError::ClientGone))
            }
        }
    }
}

impl std::future::Future for Switching {
    type Output = Result<(), SwitchError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let Some(rx) = &mut self.answer else {
            return std::task::Poll::Ready(Err(SwitchError::ClientGone));
        };
        std::pin::Pin::new(rx).poll(cx).map(|answer| {
            self.answer = None;
            answer.unwrap_or(Err(SwitchError::ClientGone))
        })
    }
}
