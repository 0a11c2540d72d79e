//! The bodies that pass through the edge, watched on the way: the request's messages are
//! counted (and, for calls that change state, the first one kept for the audit line); the
//! response's messages are counted and its `grpc-status` read from the trailers. When the
//! response ends, or the caller goes away and it is dropped, the call is reported once.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::wire::FrameCounter;

/// Bytes of the request kept for the audit line (a request naming a resource is small).
const KEEP: usize = 64 * 1024;

/// What the request body learned, read when the call is reported.
#[derive(Default)]
pub struct RequestSeen {
    pub messages: AtomicU64,
    pub kept: Mutex<Vec<u8>>,
}

/// The caller's request body on its way to the backend.
pub struct Counted {
    inner: Incoming,
    counter: FrameCounter,
    seen: Arc<RequestSeen>,
    keep: bool,
}

impl Counted {
    pub fn new(inner: Incoming, seen: Arc<RequestSeen>, keep: bool) -> Counted {
        Counted {
            inner,
            counter: FrameCounter::default(),
            seen,
            keep,
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.counter.feed(data);
                this.seen
                    .messages
                    .store(this.counter.messages, Ordering::Relaxed);
                if this.keep {
                    let mut kept = this.seen.kept.lock().unwrap_or_else(|e| e.into_inner());
                    let room = KEEP.saturating_sub(kept.len()).min(data.len());
                    kept.extend_from_slice(&data[..room]);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Told how a call ended: its gRPC code (None: the caller went away first) and messages sent.
pub trait OnEnd: Send {
    fn ended(self: Box<Self>, code: Option<u32>, sent: u64);
}

/// The response on its way to the caller: a backend's, or empty for a trailers-only answer.
#[derive(Default)]
pub struct Observed {
    inner: Option<Incoming>,
    counter: FrameCounter,
    code: Option<u32>,
    on_end: Option<Box<dyn OnEnd>>,
}

impl Observed {
    /// `code` is the status already known from the response headers (trailers-only).
    pub fn new(inner: Incoming, code: Option<u32>, on_end: Option<Box<dyn OnEnd>>) -> Observed {
        Observed {
            inner: Some(inner),
            counter: FrameCounter::default(),
            code,
            on_end,
        }
    }

    fn finish(&mut self, code: Option<u32>) {
        if let Some(on_end) = self.on_end.take() {
            on_end.ended(code, self.counter.messages);
        }
    }
}

pub fn status_of(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Body for Observed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counter.feed(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.code = status_of(trailers).or(this.code);
                }
            }
            // The backend's stream broke off: the caller sees it reset.
            Poll::Ready(Some(Err(_))) => this.finish(Some(crate::status::UNAVAILABLE)),
            Poll::Ready(None) => {
                let code = this.code.unwrap_or(crate::status::UNKNOWN);
                this.finish(Some(code));
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|inner| inner.size_hint())
            .unwrap_or_default()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // A trailers-only answer may never be polled; anything else dropped before its end
        // means the caller cancelled (or its connection went).
        let ended = self
            .inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream());
        let code = if ended {
            Some(self.code.unwrap_or(crate::status::UNKNOWN))
        } else {
            None
        };
        self.finish(code);
    }
}
