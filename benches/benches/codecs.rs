//! Codecs: JSON vs bincode vs postcard, for one realistic event and end to end.
//!
//! `cargo bench -p annals-benches --bench codecs` (add `-- --quick` for a short run).
//!
//! * `codecs/encode/*`, `codecs/decode/*`: one `OrderPlaced` event with five lines
//!   through [`DomainEvent`] (variant split + codec), events/s.
//! * `codecs/append+replay/*`: 1,000 typed events appended to the memory store in
//!   batches of 100, then read back and decoded, events/s.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::{hint::black_box, time::Duration};

use annals_core::{
    codec::{Bincode, Codec, Json, Postcard},
    futures::TryStreamExt,
    DomainEvent, EventStore, ExpectedVersion, Position, ReadStream, RecordedEvent, StreamId,
    Timestamp, Upcasters, Version,
};
use annals_memory::MemoryEventStore;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    name: String,
    quantity: u32,
    unit_price_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum OrderEvent {
    OrderPlaced {
        order_id: u64,
        customer_id: String,
        email: String,
        currency: String,
        lines: Vec<Line>,
        shipping_address: Vec<String>,
        gift: bool,
        placed_at_micros: i64,
    },
    OrderPaid {
        amount_cents: u64,
        reference: String,
    },
}

impl DomainEvent for OrderEvent {}

fn event(i: u64) -> OrderEvent {
    OrderEvent::OrderPlaced {
        order_id: 1_000_000 + i,
        customer_id: format!("cust-{:08}", i % 5000),
        email: "ada.lovelace@example.com".into(),
        currency: "EUR".into(),
        lines: (0..5)
            .map(|n| Line {
                sku: format!("SKU-{n:05}"),
                name: format!("Product number {n} with a descriptive name"),
                quantity: 1 + n,
                unit_price_cents: 199 + u64::from(n) * 1000,
            })
            .collect(),
        shipping_address: vec![
            "Ada Lovelace".into(),
            "12 St James's Square".into(),
            "London SW1Y 4JH".into(),
        ],
        gift: i.is_multiple_of(2),
        placed_at_micros: 1_750_000_000_000_000 + i64::try_from(i).unwrap(),
    }
}

fn recorded<C: Codec>(codec: &C, e: &OrderEvent) -> RecordedEvent {
    let new = e.to_new_event_with(codec).unwrap();
    RecordedEvent::from_new(
        new,
        StreamId::new("order-1").unwrap(),
        Version::FIRST,
        Position::new(1),
        Timestamp::now(),
    )
}

fn codec_names() -> [(&'static str, Codecs); 3] {
    [
        ("json", Codecs::Json),
        ("bincode", Codecs::Bincode),
        ("postcard", Codecs::Postcard),
    ]
}

#[derive(Clone, Copy)]
enum Codecs {
    Json,
    Bincode,
    Postcard,
}

macro_rules! with_codec {
    ($which:expr, |$codec:ident| $body:expr) => {
        match $which {
            Codecs::Json => {
                let $codec = Json;
                $body
            }
            Codecs::Bincode => {
                let $codec = Bincode;
                $body
            }
            Codecs::Postcard => {
                let $codec = Postcard;
                $body
            }
        }
    };
}

fn single_event(c: &mut Criterion) {
    let e = event(7);
    let upcasters = Upcasters::new();
    let mut sizes = Vec::new();
    let mut encode = c.benchmark_group("codecs/encode");
    encode.throughput(Throughput::Elements(1));
    encode.measurement_time(Duration::from_secs(2));
    for (name, which) in codec_names() {
        with_codec!(which, |codec| {
            sizes.push((name, e.to_new_event_with(&codec).unwrap().payload.len()));
            encode.bench_function(name, |b| {
                b.iter(|| black_box(&e).to_new_event_with(&codec).unwrap());
            });
        });
    }
    encode.finish();
    let mut decode = c.benchmark_group("codecs/decode");
    decode.throughput(Throughput::Elements(1));
    decode.measurement_time(Duration::from_secs(2));
    for (name, which) in codec_names() {
        with_codec!(which, |codec| {
            let rec = recorded(&codec, &e);
            decode.bench_function(name, |b| {
                b.iter(|| {
                    OrderEvent::from_recorded_with(black_box(&rec), &codec, &upcasters).unwrap()
                });
            });
        });
    }
    decode.finish();
    for (name, len) in sizes {
        eprintln!("codecs: payload size {name}: {len} bytes");
    }
}

const EVENTS: u64 = 1000;

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let upcasters = Upcasters::new();
    let events: Vec<OrderEvent> = (0..EVENTS).map(event).collect();
    let mut group = c.benchmark_group("codecs/append+replay");
    group.throughput(Throughput::Elements(EVENTS));
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(20);
    for (name, which) in codec_names() {
        with_codec!(which, |codec| {
            group.bench_function(name, |b| {
                b.to_async(&rt).iter_batched(
                    MemoryEventStore::new,
                    |store| {
                        let (events, upcasters) = (&events, &upcasters);
                        async move {
                            let stream = StreamId::new("order-1").unwrap();
                            for chunk in events.chunks(100) {
                                let batch = chunk
                                    .iter()
                                    .map(|e| e.to_new_event_with(&codec).unwrap())
                                    .collect();
                                store
                                    .append(&stream, ExpectedVersion::Any, batch)
                                    .await
                                    .unwrap();
                            }
                            let replayed: Vec<OrderEvent> = store
                                .read_stream(ReadStream::forward(&stream))
                                .map_ok(|r| {
                                    OrderEvent::from_recorded_with(&r, &codec, upcasters).unwrap()
                                })
                                .try_collect()
                                .await
                                .unwrap();
                            assert_eq!(replayed.len() as u64, EVENTS);
                        }
                    },
                    BatchSize::PerIteration,
                );
            });
        });
    }
    group.finish();
}

criterion_group!(benches, single_event, end_to_end);
criterion_main!(benches);
