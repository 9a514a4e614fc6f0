//! Compare two run directories: `cargo run -p report --example compare_runs -- RUN_A RUN_B OUT_DIR`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [ra, rb, out] = a.as_slice() else { return Err("usage: compare_runs RUN_A RUN_B OUT_DIR".into()) };
    let page = report::compare(
        &results::RunDir::open(ra.as_str())?,
        &results::RunDir::open(rb.as_str())?,
        std::path::Path::new(out),
    )?;
    println!("{}", page.display());
    Ok(())
}
