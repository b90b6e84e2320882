//! Order-processing example (work in progress).
fn main() {}
