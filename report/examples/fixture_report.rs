//! Preview the report. `cargo run -p report --example fixture_report -- DIR` writes the test fixture run into DIR
//! and renders it; `... -- --render RUN_DIR` only renders an existing run directory.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = match args.as_slice() {
        [flag, dir] if flag == "--render" => results::RunDir::open(dir.as_str())?,
        [dir] => report::fixture::write(std::path::Path::new(dir))?,
        _ => return Err("usage: fixture_report DIR | fixture_report --render RUN_DIR".into()),
    };
    println!("{}", report::render(&run)?.display());
    Ok(())
}
