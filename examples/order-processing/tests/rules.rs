//! Every business rule of the order aggregate (see the README), on annals-test-kit:
//! store-free given/when/then for the rules, a real SQLite-backed repository for the
//! upcaster and the snapshot every 100 events.
#![allow(clippy::unwrap_used, clippy::panic)]

// The example is a binary: its aggregate is compiled into this test as a module.
#[path = "../src/order.rs"]
#[allow(dead_code)]
mod order;

use annals_core::SnapshotPolicy;
use annals_test_kit::{assert, given, AggregateTest, StoreTest};
use order::{Order, OrderCommand as C, OrderError as E, OrderEvent as Ev, Status};
use serde_json::json;

fn placed() -> Ev {
    Ev::OrderPlaced {
        customer: "ann".into(),
        currency: "EUR".into(),
    }
}
fn added(sku: &str, quantity: u32) -> Ev {
    Ev::ItemAdded {
        sku: sku.into(),
        quantity,
        unit_price: 250,
    }
}
fn paid() -> Ev {
    Ev::OrderPaid {
        amount: 750,
        reference: "r-1".into(),
    }
}
fn shipped() -> Ev {
    Ev::OrderShipped {
        carrier: "DHL".into(),
        tracking: "JD1".into(),
    }
}
fn cancelled() -> Ev {
    Ev::OrderCancelled {
        reason: "late".into(),
    }
}
fn add(sku: &str, quantity: u32) -> C {
    C::AddItem {
        sku: sku.into(),
        quantity,
        unit_price: 250,
    }
}
fn remove(sku: &str, quantity: u32) -> C {
    C::RemoveItem {
        sku: sku.into(),
        quantity,
    }
}
fn pay(amount: u64) -> C {
    C::Pay {
        amount,
        reference: "r-1".into(),
    }
}
fn ship(carrier: &str) -> C {
    C::Ship {
        carrier: carrier.into(),
        tracking: "JD1".into(),
    }
}
fn cancel() -> C {
    C::Cancel {
        reason: "late".into(),
    }
}
fn place(customer: &str, currency: &str) -> C {
    C::Place {
        customer: customer.into(),
        currency: currency.into(),
    }
}

#[test]
fn the_happy_path_records_one_event_per_command() {
    given::<Order>([])
        .when(&place("ann", "EUR"))
        .then_expect(&[placed()]);
    given::<Order>([placed()])
        .when(&add("tea", 3))
        .then_expect(&[added("tea", 3)]);
    given::<Order>([placed(), added("tea", 3)])
        .when(&remove("tea", 1))
        .then_expect(&[Ev::ItemRemoved {
            sku: "tea".into(),
            quantity: 1,
        }])
        .then_state(|o| o.total() == 500);
    given::<Order>([placed(), added("tea", 3)])
        .when(&pay(750))
        .then_expect(&[paid()])
        .then_state(|o| o.status == Status::Paid && o.paid == 750);
    given::<Order>([placed(), added("tea", 3), paid()])
        .when(&ship("DHL"))
        .then_expect(&[shipped()])
        .then_state(|o| o.shipment == Some(("DHL".into(), "JD1".into())));
    for before in [vec![placed()], vec![placed(), added("tea", 3), paid()]] {
        given::<Order>(before)
            .when(&cancel())
            .then_expect(&[cancelled()]);
    }
}

#[test]
fn rejected_commands_name_the_rule() {
    let open = || vec![placed(), added("tea", 3)];
    let paid_order = || vec![placed(), added("tea", 3), paid()];
    let shipped_order = || vec![placed(), added("tea", 3), paid(), shipped()];
    #[rustfmt::skip] // a table: one rule per line
    let cases: Vec<(Vec<Ev>, C, E)> = vec![
        // An order must be placed, once, by someone, in a real currency.
        (vec![], add("tea", 1), E::NotPlaced),
        (vec![], pay(1), E::NotPlaced),
        (vec![], ship("DHL"), E::NotPlaced),
        (vec![], cancel(), E::NotPlaced),
        (vec![placed()], place("ann", "EUR"), E::AlreadyPlaced),
        (vec![], place(" ", "EUR"), E::Invalid("customer must not be empty".into())),
        (vec![], place("ann", "euro"), E::Invalid("currency `euro` is not a three-letter code like EUR".into())),
        // Items: a sku, a quantity, and no more removed than there are.
        (vec![placed()], add("", 1), E::Invalid("sku must not be empty".into())),
        (vec![placed()], add("tea", 0), E::Invalid("quantity must be at least 1".into())),
        (open(), remove("cake", 1), E::NoSuchItem("cake".into())),
        (open(), remove("tea", 0), E::Invalid("quantity must be at least 1".into())),
        (open(), remove("tea", 5), E::NotEnough { sku: "tea".into(), have: 3 }),
        // Pay the exact total of a non-empty order, once.
        (vec![placed()], pay(0), E::Empty),
        (open(), pay(1), E::WrongAmount { paid: "0.01 EUR".into(), total: "7.50 EUR".into() }),
        (paid_order(), pay(750), E::Already(Status::Paid)),
        // Cannot ship unpaid; ship once, with a carrier.
        (open(), ship("DHL"), E::Unpaid),
        (paid_order(), ship(" "), E::Invalid("carrier must not be empty".into())),
        (shipped_order(), ship("DHL"), E::Already(Status::Shipped)),
        // Paid, shipped and cancelled orders can no longer be modified.
        (paid_order(), add("cake", 1), E::Locked(Status::Paid)),
        (paid_order(), remove("tea", 1), E::Locked(Status::Paid)),
        (shipped_order(), add("cake", 1), E::Locked(Status::Shipped)),
        (shipped_order(), cancel(), E::Locked(Status::Shipped)),
        (vec![placed(), cancelled()], add("cake", 1), E::Locked(Status::Cancelled)),
        (vec![placed(), cancelled()], pay(0), E::Locked(Status::Cancelled)),
        (vec![placed(), cancelled()], ship("DHL"), E::Locked(Status::Cancelled)),
        (vec![placed(), cancelled()], cancel(), E::Already(Status::Cancelled)),
    ];
    for (before, command, expected) in cases {
        given::<Order>(before)
            .when(&command)
            .try_then_error(|e| *e == expected)
            .unwrap_or_else(|m| panic!("{command:?}: {m}"));
    }
    given::<Order>(open())
        .when(&pay(1))
        .then_error_message("payment of 0.01 EUR does not match the order total 7.50 EUR");
}

#[test]
fn v1_orders_are_read_through_the_upcaster() {
    AggregateTest::<Order>::new()
        .with_upcasters(order::upcasters())
        .given_raw("OrderPlaced.v1", &json!({ "customer": "Dave" }))
        .when(&add("teapot", 1))
        .then_expect(&[Ev::ItemAdded {
            sku: "teapot".into(),
            quantity: 1,
            unit_price: 250,
        }])
        .then_state(|o| o.customer == "Dave" && o.currency == "EUR");
}

#[tokio::test]
async fn on_sqlite_long_orders_snapshot_every_100_events_and_load_from_them() {
    let outcome = StoreTest::sqlite()
        .await
        .unwrap()
        .with_upcasters(order::upcasters())
        .with_snapshot_policy(SnapshotPolicy::every(100))
        .given_raw::<Order>("long", "OrderPlaced.v1", &json!({ "customer": "Erin" }))
        .given_stored::<Order>("long", (1..=98).map(|i| added(&format!("sku-{i}"), 1)))
        .when::<Order>("long", &add("one-more", 2))
        .await;
    // The 100th event is due a snapshot; the v1 event was upcast on the way.
    outcome
        .then_expect(&[added("one-more", 2)])
        .then_version(100)
        .then_snapshot_saved(100)
        .then_state(|o| o.currency == "EUR" && o.lines.len() == 99);

    StoreTest::sqlite()
        .await
        .unwrap()
        .with_upcasters(order::upcasters())
        .given_raw::<Order>("long", "OrderPlaced.v1", &json!({ "customer": "Erin" }))
        .given_stored::<Order>("long", (1..=150).map(|i| added(&format!("sku-{i}"), 1)))
        .given_snapshot::<Order>("long", 100)
        .when::<Order>("long", &pay(150 * 250))
        .await
        .then_loaded_from_snapshot(100)
        .then_expect(&[Ev::OrderPaid {
            amount: 37_500,
            reference: "r-1".into(),
        }])
        .then_version(152);
    assert::assert_version(outcome.appended(), 100);
}
