//! The image a run measured (`vmct compare --image`, read from the run's `image.json`): what ran, and
//! what each side needs to start it (the VM side's image-build cost beside the container side's).
use crate::html::{esc, section, table};
use crate::units::{fmt_bytes, fmt_secs};
use results::image::ImageRunInfo;

/// The "Image" section shown right under the report's first line.
pub fn image_section(i: &ImageRunInfo) -> String {
    let vm = match &i.vm_image_build {
        Some(c) => format!(
            "{} root disk: {} to flatten the layers and make it (n = 1{}), {} on the host ({} as the guest sees it, {} of files)",
            esc(&c.fs),
            fmt_secs(c.build_s),
            if c.cached { ", built by an earlier run and cached by the image digest" } else { "" },
            fmt_bytes(c.bytes as f64),
            fmt_bytes(c.size_bytes as f64),
            fmt_bytes(c.content_bytes as f64),
        ),
        None => "no linux guest ran in this run".into(),
    };
    let rows = vec![
        vec!["name, digest, size".into(), esc(&i.headline())],
        vec!["process".into(), format!("<code>{}</code>", esc(&i.argv.join(" ")))],
        vec!["ready when".into(), format!("<code>{}</code>", esc(&i.ready_rule))],
        vec!["image-build cost, container side".into(), esc(&i.container_image_build)],
        vec!["image-build cost, VM side".into(), vm],
    ];
    let na: String = i
        .not_applicable
        .iter()
        .map(|n| format!("<li><b>{}</b>: {}</li>", esc(&n.experiment), esc(&n.reason)))
        .collect();
    let na = if na.is_empty() { String::new() } else { format!("<p>Not run for this image:</p><ul>{na}</ul>") };
    section("image", "Image", &format!("{}{na}", table(&["", ""], &rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_image_and_both_build_costs() {
        let i = ImageRunInfo {
            name: "web".into(),
            digest: None,
            size_bytes: 1 << 20,
            layers: 1,
            argv: vec!["/bin/busybox".into(), "httpd".into()],
            ready_rule: "tcp:8080".into(),
            container_image_build: "none beyond the layers".into(),
            vm_image_build: Some(results::image::ImageBuildCost {
                fs: "ext4".into(),
                build_s: 0.25,
                bytes: 3 << 20,
                size_bytes: 17 << 20,
                content_bytes: 1 << 20,
                cached: false,
            }),
            not_applicable: vec![results::image::NotApplicable {
                experiment: "overhead".into(),
                reason: "not applicable to an image".into(),
            }],
        };
        let h = image_section(&i);
        assert!(
            h.contains("image web (no digest") && h.contains("none beyond the layers") && h.contains("ext4 root disk"),
            "{h}"
        );
        assert!(h.contains("overhead") && h.contains("not applicable to an image"), "{h}");
        // A run with an image.json: the first line names it, every verdict is about it.
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write(d.path()).unwrap();
        let plain = std::fs::read_to_string(crate::render(&results::RunDir::open(d.path()).unwrap()).unwrap()).unwrap();
        assert!(!plain.contains("For image web"));
        results::image::write(d.path(), &i).unwrap();
        let html = std::fs::read_to_string(crate::render(&results::RunDir::open(d.path()).unwrap()).unwrap()).unwrap();
        let body = &html[html.find("<body>").unwrap()..];
        let first = body.find("<h1>").map(|k| &body[k..k + 80]).unwrap();
        assert!(first.starts_with("<h1>vmct report: image web (no digest, 1.0 MiB in 1 layers)"), "{first}");
        let claims = html.matches("<b>For image web: ").count();
        assert_eq!(claims, crate::verdicts(&results::RunDir::open(d.path()).unwrap()).unwrap().len(), "every verdict");
    }
}
