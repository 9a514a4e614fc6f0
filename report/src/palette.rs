//! Colours: one per backend, the same in every chart and table of a report, and one per startup phase.
use plotters::style::RGBColor;

/// Fixed colours for the backends vmct knows, chosen so the models read as families: greys for the baseline,
/// blues for containers, oranges/reds for microVMs, greens for peer runtimes (teal for gVisor's runsc).
const KNOWN: &[(&str, (u8, u8, u8))] = &[
    ("process", (110, 110, 110)),
    ("microvm", (230, 120, 20)),
    ("microvm-linux", (190, 40, 40)),
    ("container", (31, 100, 190)),
    ("container-privileged", (120, 80, 190)),
    ("container-userns", (20, 160, 190)),
    ("crun", (40, 150, 70)),
    ("runc", (140, 160, 40)),
    ("runsc", (0, 120, 110)),
];

/// Fallback colours for backends not in the fixed list (picked by a stable hash of the name).
const EXTRA: &[(u8, u8, u8)] =
    &[(200, 80, 150), (100, 60, 30), (60, 60, 160), (0, 130, 120), (170, 130, 0), (90, 30, 110)];

/// The colour of a backend.
pub fn backend_rgb(name: &str) -> (u8, u8, u8) {
    if let Some((_, c)) = KNOWN.iter().find(|(n, _)| *n == name) {
        return *c;
    }
    let h = name.bytes().fold(5381u32, |h, b| h.wrapping_mul(33) ^ u32::from(b));
    EXTRA[h as usize % EXTRA.len()]
}

/// The colour of a backend, for plotters.
pub fn backend_color(name: &str) -> RGBColor {
    let (r, g, b) = backend_rgb(name);
    RGBColor(r, g, b)
}

/// The colour of a backend as CSS `#rrggbb`.
pub fn backend_css(name: &str) -> String {
    let (r, g, b) = backend_rgb(name);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Colours for phases of a stacked bar, in order of first appearance.
const PHASES: &[(u8, u8, u8)] = &[
    (78, 121, 167),
    (242, 142, 43),
    (225, 87, 89),
    (118, 183, 178),
    (89, 161, 79),
    (237, 201, 72),
    (176, 122, 161),
    (255, 157, 167),
    (156, 117, 95),
    (186, 176, 172),
    (31, 119, 180),
    (148, 103, 189),
    (23, 190, 207),
    (188, 189, 34),
    (127, 127, 127),
    (214, 39, 40),
];

/// The colour of the `i`-th distinct phase.
pub fn phase_color(i: usize) -> RGBColor {
    let (r, g, b) = PHASES[i % PHASES.len()];
    RGBColor(r, g, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_stable_and_distinct_for_known_backends() {
        assert_eq!(backend_css("container"), "#1f64be");
        assert_eq!(backend_rgb("someday-backend"), backend_rgb("someday-backend"));
        let mut all: Vec<_> = KNOWN.iter().map(|(_, c)| *c).collect();
        all.dedup();
        assert_eq!(all.len(), KNOWN.len());
    }
}
