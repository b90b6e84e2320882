//! The log as an audit log: `audit` prints recent events as CloudEvents JSON
//! (an [`EventQuery`]); `import` appends CloudEvents JSON documents read from
//! stdin through an [`EventSink`], the publisher adapter a message consumer
//! would use.

use std::{io::BufRead, sync::Arc};

use annals_core::{
    futures::{stream, SinkExt, StreamExt, TryStreamExt},
    AppendRequest, EventQuery, EventSink, EventStore, ExpectedVersion, NewEvent, StreamId,
};

use crate::app::AppError;

/// The newest `last` events (of `event_type`, if given), newest first, one
/// CloudEvents JSON document per line.
pub(crate) async fn audit(
    store: &dyn EventStore,
    event_type: Option<&str>,
    last: u64,
) -> Result<(), AppError> {
    let mut query = EventQuery::new().descending().limit(last);
    if let Some(event_type) = event_type {
        query = query.event_type(event_type);
    }
    let mut events = store.query(query);
    while let Some(event) = events.try_next().await? {
        say!("{}", event.to_cloudevent());
    }
    Ok(())
}

/// Appends every CloudEvents JSON document on stdin (one per line) to the stream
/// named by its subject (`imported` without one), each as one atomic request.
/// Re-importing the same documents stores nothing twice: an event's id derives
/// from its `(source, id)`.
pub(crate) async fn import(store: Arc<dyn EventStore>) -> Result<u64, AppError> {
    let mut requests = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| AppError::Input(format!("reading stdin: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = NewEvent::from_cloudevent_json(&line)
            .map_err(|e| AppError::Input(format!("line {}: {e}", n + 1)))?;
        let stream = StreamId::new(event.metadata.subject.as_deref().unwrap_or("imported"))?;
        requests.push(AppendRequest::new().append(&stream, ExpectedVersion::Any, vec![event]));
    }
    let count = requests.len() as u64;
    let mut sink = EventSink::new(store);
    sink.send_all(&mut stream::iter(requests).map(Ok)).await?;
    sink.close().await?;
    Ok(count)
}
