//! `demo`: a full scenario — happy path, rejected commands, an imported legacy
//! event, and a long-lived order that loads from a snapshot.

use annals_core::{DomainEvent, ExpectedVersion, NewEvent};

use crate::{
    app::{stream_of, App, AppError, LoadInfo, OrderView},
    order::{OrderCommand, OrderEvent},
};

fn place(customer: &str) -> OrderCommand {
    OrderCommand::Place {
        customer: customer.into(),
        currency: "EUR".into(),
    }
}

fn add(sku: &str, quantity: u32, unit_price: u64) -> OrderCommand {
    OrderCommand::AddItem {
        sku: sku.into(),
        quantity,
        unit_price,
    }
}

fn remove(sku: &str, quantity: u32) -> OrderCommand {
    OrderCommand::RemoveItem {
        sku: sku.into(),
        quantity,
    }
}

fn pay(amount: u64) -> OrderCommand {
    OrderCommand::Pay {
        amount,
        reference: "demo-payment".into(),
    }
}

fn ship(carrier: &str, tracking: &str) -> OrderCommand {
    OrderCommand::Ship {
        carrier: carrier.into(),
        tracking: tracking.into(),
    }
}

fn describe(command: &OrderCommand) -> String {
    match command {
        OrderCommand::Place { customer, .. } => format!("place for {customer}"),
        OrderCommand::AddItem { sku, quantity, .. } => format!("add {quantity} × {sku}"),
        OrderCommand::RemoveItem { sku, quantity } => format!("remove {quantity} × {sku}"),
        OrderCommand::Pay { amount, .. } => {
            format!("pay {}", crate::order::format_money(*amount, "EUR"))
        }
        OrderCommand::Ship { carrier, .. } => format!("ship with {carrier}"),
        OrderCommand::Cancel { reason } => format!("cancel ({reason})"),
    }
}

/// Runs one step, printing the outcome; a rejected command is expected and
/// printed, a storage error ends the demo.
async fn step(app: &App, order: &str, command: OrderCommand) -> Result<(), AppError> {
    let what = describe(&command);
    match app.execute(order, &command).await {
        Ok(done) => {
            let types: Vec<String> = done
                .events
                .iter()
                .filter_map(|e| e.event_type().ok())
                .collect();
            say!(
                "  ok        {order:<22} {what:<28} → {} (version {})",
                types.join(", "),
                done.version
            );
            Ok(())
        }
        Err(AppError::Rejected(reason)) => {
            say!("  REJECTED  {order:<22} {what:<28} → {reason}");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The first unused run number, so the demo can run again on the same data.
async fn run_number(app: &App) -> Result<u32, AppError> {
    for n in 1..10_000 {
        if !app.exists(&format!("d{n}-alice")).await? {
            return Ok(n);
        }
    }
    Err(AppError::Rejected(crate::order::OrderError::Invalid(
        "too many demo runs in this data directory".into(),
    )))
}

pub(crate) async fn run(app: &App, verbose: bool) -> Result<(), AppError> {
    let run = run_number(app).await?;
    let id = |name: &str| format!("d{run}-{name}");
    say!("demo run #{run}\n");

    say!("1. Alice orders tea and cake, changes her mind about the cake, pays, and it ships:");
    let alice = id("alice");
    step(app, &alice, place("Alice")).await?;
    step(app, &alice, add("green-tea", 2, 450)).await?;
    step(app, &alice, add("cheesecake", 1, 1290)).await?;
    step(app, &alice, remove("cheesecake", 1)).await?;
    step(app, &alice, ship("DHL", "JD014600003")).await?;
    step(app, &alice, pay(900)).await?;
    step(app, &alice, ship("DHL", "JD014600003")).await?;
    step(app, &alice, add("biscuits", 1, 300)).await?;
    step(
        app,
        &alice,
        OrderCommand::Cancel {
            reason: "changed my mind".into(),
        },
    )
    .await?;

    say!("\n2. Bob pays the wrong amount, then the right one; the paid order is locked:");
    let bob = id("bob");
    step(app, &bob, place("Bob")).await?;
    step(app, &bob, add("espresso-beans", 3, 1150)).await?;
    step(app, &bob, pay(3000)).await?;
    step(app, &bob, pay(3450)).await?;
    step(app, &bob, remove("espresso-beans", 1)).await?;
    step(app, &bob, place("Bob")).await?;

    say!("\n3. Carol cancels before paying; nothing can change afterwards:");
    let carol = id("carol");
    step(app, &carol, add("mug", 1, 800)).await?;
    step(app, &carol, place("Carol")).await?;
    step(app, &carol, add("mug", 2, 800)).await?;
    step(app, &carol, remove("teapot", 1)).await?;
    step(
        app,
        &carol,
        OrderCommand::Cancel {
            reason: "found a cheaper mug".into(),
        },
    )
    .await?;
    step(app, &carol, pay(1600)).await?;

    say!("\n4. An order imported from the old system, stored as OrderPlaced.v1 (no currency):");
    let legacy = id("legacy");
    let v1 = NewEvent::json("OrderPlaced.v1", &serde_json::json!({ "customer": "Dave" }))?;
    app.repo
        .store()
        .append(&stream_of(&legacy)?, ExpectedVersion::NoStream, vec![v1])
        .await?;
    say!("  wrote     {legacy:<22} OrderPlaced.v1 {{\"customer\":\"Dave\"}} (version 1)");
    step(app, &legacy, add("teapot", 1, 2500)).await?;
    step(app, &legacy, pay(2500)).await?;
    let loaded = app.load(&legacy).await?;
    say!(
        "  read back through the OrderPlaced v1→v2 upcaster: customer {}, currency {}; \
         new events are written as {}",
        loaded.state.customer,
        loaded.state.currency,
        OrderEvent::OrderPlaced {
            customer: String::new(),
            currency: String::new()
        }
        .event_type()?
    );

    say!("\n5. Erin's standing order is edited for months (a long-lived stream):");
    let erin = id("erin");
    step(app, &erin, place("Erin")).await?;
    let mut snapshots = Vec::new();
    let mut edits = 0;
    for week in 0..75_u32 {
        let sku = ["oat-milk", "coffee", "apples", "bread"]
            .get(week as usize % 4)
            .copied()
            .unwrap_or("bread");
        for command in [add(sku, 2, 199 + u64::from(week % 7) * 10), remove(sku, 1)] {
            let done = app.execute(&erin, &command).await?;
            edits += 1;
            snapshots.extend(done.snapshot_saved);
        }
    }
    say!(
        "  ok        {erin:<22} {edits} add/remove edits (versions 2..={})",
        edits + 1
    );
    for version in &snapshots {
        say!("  snapshot  {erin:<22} saved at version {version} (policy: every 100 events)");
    }
    let loaded = app.load(&erin).await?;
    say!("  load      {erin:<22} {}", LoadInfo(&loaded));

    say!("\nResulting orders:\n");
    for order in [&alice, &bob, &carol, &legacy, &erin] {
        let loaded = app.load(order).await?;
        say!(
            "{}\n",
            OrderView {
                id: order,
                loaded: &loaded,
                verbose: verbose || loaded.snapshot_version.is_some(),
            }
        );
    }
    Ok(())
}
