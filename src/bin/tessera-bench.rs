//! `tessera-bench`: benchmarks (filled in by later issues).

fn main() {
    println!("no benchmarks yet");
}
