#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! The headline cards lay out inside their borders in a real browser (issue 17, case 13: "4.25 MiB" ran past the
//! card's border at 1400 px). Renders a fixture run with long backend names and invalid figures, adds a script
//! to a copy of the page that measures every element of every card, and reads the result from headless
//! Chromium's DOM dump at a desktop and a phone width.
//!
//! Needs Debian's `chromium` (installed by `scripts/setup-host`). Without it the test skips with a note, unless
//! `VMCT_REQUIRE_PRIVILEGED=1` (CI), where it fails.
use results::{DensityFit, Record};
use std::path::Path;
use std::process::Command;

/// Measures each card's descendants and writes `{"cards":N,"bad":[...]}` into `<pre id="overflow">`.
const PROBE: &str = r#"<script>
window.addEventListener("load", () => {
  const bad = [];
  const cards = document.querySelectorAll(".card");
  cards.forEach((c, i) => {
    const r = c.getBoundingClientRect();
    c.querySelectorAll("*").forEach(e => {
      const q = e.getBoundingClientRect();
      if (q.width > 0 && (q.right > r.right + 0.5 || q.left < r.left - 0.5)) {
        bad.push(`card ${i}: <${e.tagName.toLowerCase()}> "${(e.textContent || "").slice(0, 40)}" spans ${q.left}..${q.right}, card ${r.left}..${r.right}`);
      }
    });
  });
  const p = document.createElement("pre");
  p.id = "overflow";
  p.textContent = JSON.stringify({ cards: cards.length, bad });
  document.body.appendChild(p);
});
</script>"#;

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .map(String::from)
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// The probe's JSON for `page` at `width` px.
fn measure(browser: &str, page: &Path, profile: &Path, width: u32) -> serde_json::Value {
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},900"))
        .args(["--virtual-time-budget=3000", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"overflow\">").expect("the probe ran") + "<pre id=\"overflow\">".len();
    let json = dom[start..start + dom[start..].find("</pre>").unwrap()].replace("&gt;", ">").replace("&lt;", "<");
    serde_json::from_str(&json.replace("&quot;", "\"").replace("&amp;", "&")).expect("probe JSON")
}

#[test]
fn headline_cards_keep_their_content_inside_at_desktop_and_phone_widths() {
    let Some(browser) = chromium() else {
        let required = std::env::var("VMCT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
        assert!(!required, "chromium not found (apt-get install -y chromium) and VMCT_REQUIRE_PRIVILEGED=1");
        eprintln!("skipped: chromium not found (apt-get install -y chromium)");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let rd = report::fixture::write_degenerate(&d.path().join("run")).unwrap();
    // Long backend names and the values that overflowed (4.25 MiB each at 241 instances per GiB).
    let mut fits: Vec<DensityFit> = rd.read_csv().unwrap();
    for (name, mib) in [("container-privileged", 4.25), ("container-userns", 4.45), ("microvm-linux", 44.6)] {
        let mut f = fits[0].clone();
        f.backend = name.into();
        f.slope_bytes = mib * 1048576.0;
        f.instances_per_gib = 1024.0 / mib;
        fits.push(f);
    }
    rd.write_csv(&fits).unwrap();
    let html = std::fs::read_to_string(report::render(&rd).unwrap()).unwrap();
    assert!(html.contains("4.25 MiB"));
    let page = d.path().join("layout.html");
    std::fs::write(&page, html.replacen("</body>", &format!("{PROBE}</body>"), 1)).unwrap();
    for width in [1400, 420] {
        let v = measure(&browser, &page, &d.path().join(format!("profile-{width}")), width);
        assert_eq!(v["cards"], 4, "{width} px: {v}");
        assert_eq!(v["bad"], serde_json::json!([]), "{width} px: content outside its card: {v:#}");
    }
    assert_eq!(DensityFit::FILE, "density_summary.csv");
}
