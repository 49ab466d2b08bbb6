//! Pings a socket in a loop and prints the median round trip:
//! `cargo run --release -p ihsm-client --example ping -- SOCKET [COUNT]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

fn main() {
    let mut args = std::env::args().skip(1);
    let sock = args.next().expect("usage: ping SOCKET [COUNT]");
    let n: usize = args.next().map_or(100_000, |c| c.parse().unwrap());
    let mut c = ihsm_client::Client::connect(&sock).unwrap();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = std::time::Instant::now();
        c.ping().unwrap();
        lat.push(t.elapsed().as_nanos());
    }
    lat.sort_unstable();
    println!(
        "{n} pings: p50 {:.1} us, p99 {:.1} us",
        lat[n / 2] as f64 / 1e3,
        lat[n * 99 / 100] as f64 / 1e3
    );
}
