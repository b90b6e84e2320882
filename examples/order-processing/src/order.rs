//! The order aggregate: typed, versioned events, commands and business rules.

use std::{collections::BTreeMap, fmt};

use annals_core::{Aggregate, DomainEvent, Upcasters};
use serde::{Deserialize, Serialize};

/// Money in minor units (cents).
pub(crate) type Cents = u64;

/// Everything that can happen to an order. Each variant is one stored event type
/// (`OrderPlaced.v2`, `ItemAdded.v1`, …); the payload is the variant's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum OrderEvent {
    /// v2 added `currency`; v1 events (`{"customer": …}`) are upcast with "EUR".
    OrderPlaced {
        customer: String,
        currency: String,
    },
    ItemAdded {
        sku: String,
        quantity: u32,
        unit_price: Cents,
    },
    ItemRemoved {
        sku: String,
        quantity: u32,
    },
    OrderPaid {
        amount: Cents,
        reference: String,
    },
    OrderShipped {
        carrier: String,
        tracking: String,
    },
    OrderCancelled {
        reason: String,
    },
}

impl DomainEvent for OrderEvent {
    fn schema_version(name: &str) -> u32 {
        match name {
            "OrderPlaced" => 2,
            _ => 1,
        }
    }
}

/// Upcasters for every older event shape this application ever wrote.
pub(crate) fn upcasters() -> Upcasters {
    // OrderPlaced.v1 had no currency: every order was in euros.
    Upcasters::new().json("OrderPlaced", 1, |mut payload| {
        let object = payload
            .as_object_mut()
            .ok_or("OrderPlaced.v1 payload is not a JSON object")?;
        object.entry("currency").or_insert_with(|| "EUR".into());
        Ok(payload)
    })
}

/// What a user asks an order to do.
#[derive(Clone, Debug)]
pub(crate) enum OrderCommand {
    Place {
        customer: String,
        currency: String,
    },
    AddItem {
        sku: String,
        quantity: u32,
        unit_price: Cents,
    },
    RemoveItem {
        sku: String,
        quantity: u32,
    },
    Pay {
        amount: Cents,
        reference: String,
    },
    Ship {
        carrier: String,
        tracking: String,
    },
    Cancel {
        reason: String,
    },
}

/// A business rule said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OrderError {
    #[error("order does not exist; place it first")]
    NotPlaced,
    #[error("order was already placed")]
    AlreadyPlaced,
    #[error("order is {0}; it can no longer be modified")]
    Locked(Status),
    #[error("{0}")]
    Invalid(String),
    #[error("order has no item `{0}`")]
    NoSuchItem(String),
    #[error("order has only {have} × `{sku}`")]
    NotEnough { sku: String, have: u32 },
    #[error("cannot pay an empty order")]
    Empty,
    #[error("payment of {paid} does not match the order total {total}")]
    WrongAmount { paid: String, total: String },
    #[error("cannot ship an unpaid order")]
    Unpaid,
    #[error("order is already {0}")]
    Already(Status),
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Status {
    #[default]
    New,
    Open,
    Paid,
    Shipped,
    Cancelled,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::New => "new",
            Status::Open => "open",
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Cancelled => "cancelled",
        })
    }
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Line {
    pub(crate) quantity: u32,
    pub(crate) unit_price: Cents,
}

/// The order's state, rebuilt from its events (and snapshotted every 100 events).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Order {
    pub(crate) status: Status,
    pub(crate) customer: String,
    pub(crate) currency: String,
    pub(crate) lines: BTreeMap<String, Line>,
    pub(crate) paid: Cents,
    pub(crate) shipment: Option<(String, String)>,
    pub(crate) cancel_reason: Option<String>,
}

impl Order {
    /// Sum of all lines.
    pub(crate) fn total(&self) -> Cents {
        self.lines
            .values()
            .map(|l| u64::from(l.quantity).saturating_mul(l.unit_price))
            .fold(0, u64::saturating_add)
    }

    /// Formats an amount in the order's currency.
    pub(crate) fn money(&self, cents: Cents) -> String {
        format_money(cents, &self.currency)
    }

    fn modifiable(&self) -> Result<(), OrderError> {
        match self.status {
            Status::New => Err(OrderError::NotPlaced),
            Status::Open => Ok(()),
            other => Err(OrderError::Locked(other)),
        }
    }
}

/// `1250` in `EUR` → `12.50 EUR`.
pub(crate) fn format_money(cents: Cents, currency: &str) -> String {
    format!("{}.{:02} {currency}", cents / 100, cents % 100)
}

fn non_empty(what: &str, value: &str) -> Result<(), OrderError> {
    if value.trim().is_empty() {
        Err(OrderError::Invalid(format!("{what} must not be empty")))
    } else {
        Ok(())
    }
}

impl Aggregate for Order {
    type Event = OrderEvent;
    type Command = OrderCommand;
    type Error = OrderError;
    const CATEGORY: &'static str = "order";
    const SNAPSHOT_SCHEMA_VERSION: u32 = 1;

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { customer, currency } => {
                self.status = Status::Open;
                self.customer.clone_from(customer);
                self.currency.clone_from(currency);
            }
            OrderEvent::ItemAdded {
                sku,
                quantity,
                unit_price,
            } => {
                let line = self.lines.entry(sku.clone()).or_insert(Line {
                    quantity: 0,
                    unit_price: *unit_price,
                });
                line.quantity = line.quantity.saturating_add(*quantity);
                line.unit_price = *unit_price;
            }
            OrderEvent::ItemRemoved { sku, quantity } => {
                if let Some(line) = self.lines.get_mut(sku) {
                    line.quantity = line.quantity.saturating_sub(*quantity);
                    if line.quantity == 0 {
                        self.lines.remove(sku);
                    }
                }
            }
            OrderEvent::OrderPaid { amount, .. } => {
                self.status = Status::Paid;
                self.paid = *amount;
            }
            OrderEvent::OrderShipped { carrier, tracking } => {
                self.status = Status::Shipped;
                self.shipment = Some((carrier.clone(), tracking.clone()));
            }
            OrderEvent::OrderCancelled { reason } => {
                self.status = Status::Cancelled;
                self.cancel_reason = Some(reason.clone());
            }
        }
    }

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let event = match command {
            OrderCommand::Place { customer, currency } => {
                if self.status != Status::New {
                    return Err(OrderError::AlreadyPlaced);
                }
                non_empty("customer", customer)?;
                if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(OrderError::Invalid(format!(
                        "currency `{currency}` is not a three-letter code like EUR"
                    )));
                }
                OrderEvent::OrderPlaced {
                    customer: customer.clone(),
                    currency: currency.clone(),
                }
            }
            OrderCommand::AddItem {
                sku,
                quantity,
                unit_price,
            } => {
                self.modifiable()?;
                non_empty("sku", sku)?;
                if *quantity == 0 {
                    return Err(OrderError::Invalid("quantity must be at least 1".into()));
                }
                OrderEvent::ItemAdded {
                    sku: sku.clone(),
                    quantity: *quantity,
                    unit_price: *unit_price,
                }
            }
            OrderCommand::RemoveItem { sku, quantity } => {
                self.modifiable()?;
                let line = self
                    .lines
                    .get(sku)
                    .ok_or_else(|| OrderError::NoSuchItem(sku.clone()))?;
                if *quantity == 0 {
                    return Err(OrderError::Invalid("quantity must be at least 1".into()));
                }
                if line.quantity < *quantity {
                    return Err(OrderError::NotEnough {
                        sku: sku.clone(),
                        have: line.quantity,
                    });
                }
                OrderEvent::ItemRemoved {
                    sku: sku.clone(),
                    quantity: *quantity,
                }
            }
            OrderCommand::Pay { amount, reference } => {
                match self.status {
                    Status::Open => {}
                    Status::New => return Err(OrderError::NotPlaced),
                    Status::Paid | Status::Shipped => return Err(OrderError::Already(self.status)),
                    Status::Cancelled => return Err(OrderError::Locked(self.status)),
                }
                if self.lines.is_empty() {
                    return Err(OrderError::Empty);
                }
                if *amount != self.total() {
                    return Err(OrderError::WrongAmount {
                        paid: self.money(*amount),
                        total: self.money(self.total()),
                    });
                }
                OrderEvent::OrderPaid {
                    amount: *amount,
                    reference: reference.clone(),
                }
            }
            OrderCommand::Ship { carrier, tracking } => {
                match self.status {
                    Status::Paid => {}
                    Status::Open => return Err(OrderError::Unpaid),
                    Status::New => return Err(OrderError::NotPlaced),
                    Status::Shipped => return Err(OrderError::Already(self.status)),
                    Status::Cancelled => return Err(OrderError::Locked(self.status)),
                }
                non_empty("carrier", carrier)?;
                OrderEvent::OrderShipped {
                    carrier: carrier.clone(),
                    tracking: tracking.clone(),
                }
            }
            OrderCommand::Cancel { reason } => {
                match self.status {
                    Status::Open | Status::Paid => {}
                    Status::New => return Err(OrderError::NotPlaced),
                    Status::Shipped => return Err(OrderError::Locked(self.status)),
                    Status::Cancelled => return Err(OrderError::Already(self.status)),
                }
                OrderEvent::OrderCancelled {
                    reason: reason.clone(),
                }
            }
        };
        Ok(vec![event])
    }
}

#[cfg(test)]
mod tests {
    // The business rules are tested through annals-test-kit in tests/rules.rs.
    use super::*;

    #[test]
    fn money_formats_cents() {
        assert_eq!(format_money(1205, "EUR"), "12.05 EUR");
        assert_eq!(format_money(7, "USD"), "0.07 USD");
    }
}
