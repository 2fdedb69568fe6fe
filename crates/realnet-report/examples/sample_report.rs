//! Writes the report page of a synthetic test set (no model needed): `cargo run -p realnet-report
//! --example sample_report -- OUT.html`. Used by `scripts/report_check.sh` when no run is given.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: sample_report OUT.html")?;
    let html = realnet_report::render(&realnet_report::sample::sample_input(12, 14))?;
    std::fs::write(&out, html)?;
    println!("{out}");
    Ok(())
}
