//! Placeholder bench, replaced by the simnet chain benchmark.
fn main() {
    divan::main();
}

#[divan::bench]
fn noop() -> u64 {
    divan::black_box(1)
}
