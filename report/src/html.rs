//! HTML building blocks: escaping, links to CSVs, tables, sections and the page shell with its inline CSS.
//! Nothing here references the network: no external scripts, fonts or stylesheets.
use std::fmt::Write as _;

/// Escape text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// A number (already formatted) linking to the CSV file it came from.
pub fn num(text: &str, csv: &str) -> String {
    format!("<a class=\"n\" href=\"{}\" title=\"from {}\">{}</a>", esc(csv), esc(csv), esc(text))
}

/// A figure's table cell, judged by [`crate::validity`]: the number linking to its CSV when valid; the number
/// plus a short mark (`n = 1, not compared`, the full reason as its tooltip) when it rests on too few samples
/// (shown, never compared); only the reason when the value is not a possible measurement.
pub fn checked(fig: &crate::validity::Figure, fmt: impl Fn(f64) -> String, csv: &str) -> String {
    match fig.check() {
        Ok(v) => num(&fmt(v), csv),
        Err(flaw) if flaw.shows_value() => {
            format!(
                "{} <span class=\"flaw nw\" title=\"{}\">({})</span>",
                num(&fmt(fig.value), csv),
                esc(&flaw.to_string()),
                esc(&flaw.short())
            )
        }
        Err(flaw) => format!("<a class=\"flaw\" href=\"{}\">{}</a>", esc(csv), esc(&flaw.describe(fmt))),
    }
}

/// A coloured swatch plus the backend name.
pub fn backend(name: &str) -> String {
    format!(
        "<span class=\"nw\"><span class=\"sw\" style=\"background:{}\"></span>{}</span>",
        crate::palette::backend_css(name),
        esc(name)
    )
}

/// A table: header cells are escaped; body cells are HTML already.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut o = String::from("<div class=\"tw\"><table><thead><tr>");
    for h in headers {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr></thead><tbody>");
    for r in rows {
        o.push_str("<tr>");
        for c in r {
            let _ = write!(o, "<td>{c}</td>");
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table></div>");
    o
}

/// A `<section>` with an id, a heading and body HTML.
pub fn section(id: &str, title: &str, body: &str) -> String {
    format!("<section id=\"{}\"><h2>{}</h2>{}</section>\n", esc(id), esc(title), body)
}

/// The "not run in this run" body of a section whose CSV is absent. For a CSV that is present but has nothing
/// usable, use [`no_rows`].
pub fn not_run(csv: &str, why: &str) -> String {
    format!("<p class=\"notrun\">Not run in this run: <code>{}</code> is absent ({}).</p>", esc(csv), esc(why))
}

/// The body of a section or chart whose CSV is present but holds no usable rows (`why` says which were
/// missing or refused).
pub fn no_rows(csv: &str, why: &str) -> String {
    format!("<p class=\"notrun\">Nothing to show: <code>{}</code> is present but {}.</p>", esc(csv), esc(why))
}

/// A figure holding an inline SVG chart, with a link to the standalone .svg file and the CSV.
pub fn figure(chart: &crate::charts::Chart, csv: &str) -> String {
    let svg = chart.svg.trim_start_matches(|c| c != '<');
    let svg = if svg.starts_with("<?xml") { svg.split_once("?>").map_or(svg, |x| x.1) } else { svg };
    // Inline SVG in HTML needs no namespace declaration; dropping it keeps the page free of any URL.
    let svg = svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    format!(
        "<figure>{}<figcaption>{} · <a href=\"{}\">{}</a> · data: <a href=\"{}\">{}</a></figcaption></figure>",
        svg,
        esc(&chart.title),
        esc(&chart.file),
        esc(&chart.file),
        esc(csv),
        esc(csv)
    )
}

/// Inline stylesheet: system fonts, readable measure, tables that scroll on narrow screens, print friendly.
pub const CSS: &str = r#"
:root{--fg:#1d2430;--mut:#5b6472;--bg:#fff;--alt:#f5f7fa;--line:#dde2e8;--acc:#1f64be;--bad:#b3261e;--badbg:#fde7e5;--ok:#1b7a3a;--okbg:#e5f5ea;--warn:#8a5a00;--warnbg:#fff4d6}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1120px;margin:0 auto;padding:24px 28px 64px}
header.top{border-bottom:3px solid var(--acc);padding-bottom:12px;margin-bottom:20px}
h1{font-size:28px;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:21px;margin:40px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:22px 0 6px}
.sub{color:var(--mut);margin:0}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--alt);padding:1px 4px;border-radius:3px}
nav.toc{display:flex;flex-wrap:wrap;gap:6px 14px;font-size:14px;margin:10px 0 0}
nav.toc a{color:var(--acc);text-decoration:none}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:14px;margin:18px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:var(--alt);min-width:0;overflow-wrap:anywhere}
.card h3{margin:0 0 8px;font-size:13px;text-transform:uppercase;letter-spacing:.05em;color:var(--mut)}
.card .big{font-size:26px;font-weight:650;line-height:1.25}
.card .big .nw{white-space:normal}
.crow{display:flex;flex-wrap:wrap;justify-content:space-between;gap:0 10px;font-size:14px;padding:2px 0}
.crow .k{min-width:0}
.crow .v{margin-left:auto;text-align:right;min-width:0}
.crow .flaw,.crow .na{font-size:12.5px}
.card table{font-size:14px}
.card td{padding:2px 8px 2px 0;border:0;white-space:nowrap}
.tw{overflow-x:auto;margin:8px 0 14px}
table{border-collapse:collapse;font-size:14px;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--alt);font-weight:600;white-space:nowrap}
tbody tr:hover{background:#fafbfc}
a.n{white-space:nowrap;color:inherit;text-decoration:none;border-bottom:1px dotted #9aa4b1}
a.n:hover{color:var(--acc);border-bottom-color:var(--acc)}
.nw{white-space:nowrap}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:baseline}
.fail{background:var(--badbg);color:var(--bad);font-weight:600}
.pass{color:var(--ok)}
.na{color:var(--mut);font-style:italic}
.unsup{color:var(--warn);font-style:italic}
.flaw{color:var(--bad);font-style:italic;font-size:12px;white-space:normal;text-decoration:none}
td>a.flaw{display:inline-block;min-width:15em}
.notrun{color:var(--mut);background:var(--alt);border-left:4px solid var(--line);padding:8px 12px}
.caveats li{margin:3px 0}
.caveats{background:var(--warnbg);border:1px solid #f0d999;border-radius:6px;padding:8px 12px 8px 30px}
figure{margin:14px 0 22px}
figure svg{width:100%;height:auto;border:1px solid var(--line);border-radius:6px}
figcaption{font-size:13px;color:var(--mut);margin-top:4px}
.verdict{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;font-weight:600;white-space:nowrap}
.v-holds{background:var(--okbg);color:var(--ok)}
.v-unlike,.v-vtx{background:var(--warnbg);color:var(--warn)}
details.pair{margin:.5em 0}details.pair>summary{cursor:pointer;font-weight:600}
.v-not{background:var(--badbg);color:var(--bad)}
.v-unmeasured{background:var(--alt);color:var(--mut)}
ul.ev{margin:4px 0 0;padding-left:18px;font-size:13px;color:var(--mut)}
.kv td:first-child{color:var(--mut);white-space:nowrap}
footer{margin-top:48px;font-size:13px;color:var(--mut);border-top:1px solid var(--line);padding-top:10px}
.up{color:var(--bad)} .down{color:var(--ok)}
.tm{display:inline-block;font-size:11px;font-style:normal;font-weight:600;line-height:1.3;padding:0 5px;border-radius:8px;white-space:nowrap;vertical-align:baseline;cursor:help}
.tm-emul,.tm-interp{background:var(--badbg);color:var(--bad)}
.tm-bare{background:var(--warnbg);color:var(--warn)}
.tmlegend{font-size:13px;color:var(--mut);background:var(--alt);border:1px solid var(--line);border-radius:6px;padding:6px 12px;margin:12px 0}
.tmlegend ul{margin:4px 0 0;padding-left:18px}
@media print{main{max-width:none}figure,table{break-inside:avoid}}
"#;

/// The page shell: doctype, charset, title, inline CSS, body.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"generator\" content=\"vmct report\">\
         <title>{}</title><style>{}</style></head>\n<body><main>\n{}\n</main></body></html>\n",
        esc(title),
        CSS,
        body
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        assert!(num("1.2 ms", "startup_summary.csv").contains("href=\"startup_summary.csv\""));
        assert!(not_run("blast.csv", "<why>").contains("&lt;why&gt;"));
    }
}
