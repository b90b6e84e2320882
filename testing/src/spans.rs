//! [`SpanRecorder`]: a `tracing` subscriber that keeps every span's name and
//! fields as text, for tests that check what a store traces (and that no payload
//! leaks into a span).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex, PoisonError,
};

use tracing::{
    field::{Field, Visit},
    span, Event, Metadata, Subscriber,
};

/// Records every span: its name and its fields as `name=value ` text, including
/// values recorded later (such as `outcome`). Install it with
/// `tracing::subscriber::set_default(recorder.clone())`.
///
/// ```
/// use annals_testing::spans::SpanRecorder;
///
/// let recorder = SpanRecorder::default();
/// tracing::subscriber::with_default(recorder.clone(), || {
///     let span = tracing::debug_span!("annals.demo", outcome = tracing::field::Empty);
///     span.record("outcome", "ok");
/// });
/// assert_eq!(recorder.fields("annals.demo"), vec![r#"outcome="ok" "#.to_owned()]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct SpanRecorder {
    spans: Arc<Mutex<Vec<(u64, String, String)>>>,
    next: Arc<AtomicU64>,
}

impl SpanRecorder {
    /// Every span so far, in creation order: `(name, fields)`.
    pub fn spans(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|(_, name, fields)| (name.clone(), fields.clone()))
            .collect()
    }

    /// The fields of every span named `name`, in creation order.
    pub fn fields(&self, name: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(_, _, fields)| fields.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, String, String)>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for SpanRecorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &span::Attributes<'_>) -> span::Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut text = String::new();
        attrs.record(&mut Fields(&mut text));
        self.lock()
            .push((id, attrs.metadata().name().to_owned(), text));
        span::Id::from_u64(id)
    }
    fn record(&self, id: &span::Id, values: &span::Record<'_>) {
        let mut spans = self.lock();
        if let Some((_, _, text)) = spans.iter_mut().find(|(i, _, _)| *i == id.into_u64()) {
            values.record(&mut Fields(text));
        }
    }
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}
