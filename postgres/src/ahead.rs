//! Read-ahead for paged reads: while the caller handles one page, the next is
//! fetched on a spawned task, so the server produces page *n + 1* (and the
//! client decodes it) while the caller folds page *n*.

use std::future::Future;

use annals_core::{EventStream, RecordedEvent, Result};
use futures::{stream, StreamExt, TryStreamExt};
use tokio::task::JoinHandle;

use crate::Error;

/// A fetched page: its events, and the state to fetch the next page from
/// (`None`: the read is over). `None` instead of a page: nothing more to read.
pub(crate) type Fetched<S> = Option<(Vec<RecordedEvent>, Option<S>)>;

/// A page being fetched ahead; aborted if the read is dropped first (the
/// session of an aborted fetch is dropped mid-statement, see `session.rs`).
struct Ahead<S>(JoinHandle<Result<Fetched<S>>>);

impl<S> Drop for Ahead<S> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the next page is.
enum Next<S> {
    /// To be fetched when the caller asks for it.
    Later(S),
    /// Being fetched.
    Ahead(Ahead<S>),
    /// The read is over.
    Done,
}

/// The events of a paged read: `fetch(state)` fetches one page from `first`
/// on. After the first page, each page that leaves more to read starts the
/// next page's fetch on a spawned task before its events are handed out; a
/// read that stops after its first page never fetches ahead. At most two pages
/// are held at once: the one being handed out and the one being fetched.
/// Errors come in order, after the events of the pages before them. Without a
/// Tokio runtime, pages are fetched when asked for.
pub(crate) fn paged<S, F, Fut>(first: Result<S>, fetch: F) -> EventStream<'static>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Fetched<S>>> + Send + 'static,
{
    let start = first.map(Next::Later);
    stream::try_unfold(
        (Some(start), fetch, 0_u64),
        |(next, fetch, pages)| async move {
            let fetched = match next {
                None | Some(Ok(Next::Done)) => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(Next::Later(state))) => fetch(state).await?,
                Some(Ok(Next::Ahead(mut ahead))) => (&mut ahead.0)
                    .await
                    .map_err(|e| Error::backend("reading events ahead", e))??,
            };
            let Some((events, state)) = fetched else {
                return Ok(None);
            };
            let next = match state {
                None => Next::Done,
                Some(state) => match tokio::runtime::Handle::try_current() {
                    Ok(runtime) if pages > 0 => Next::Ahead(Ahead(runtime.spawn(fetch(state)))),
                    _ => Next::Later(state),
                },
            };
            Ok(Some((
                stream::iter(events.into_iter().map(Ok)),
                (Some(Ok(next)), fetch, pages + 1),
            )))
        },
    )
    .try_flatten()
    .boxed()
}
