//! Transfer marks on the report's figures (issue 15 item 5): every figure cell whose figure does not
//! transfer to a host with VT-x/AMD-V running the deployed model carries a short badge (the full mark
//! as its tooltip), explained once per page by [`legend`]. The marks come from run.json
//! ([`results::transfer::TransferMark`]) and, for runs written before it recorded them, from the rule
//! itself ([`results::transfer::mark_of`]: the backend's info and the host's KVM flavour).
//!
//! Tables of one backend per row declare each column's [`Quantity`] once, next to its header
//! ([`marked_table`]); other cells (pivot tables, headline cards) go through [`marked`].
use crate::data::RunData;
use crate::html::{esc, table};
use results::{Quantity, Transfer};

impl RunData {
    /// Whether `backend`'s figures of `quantity` in this run transfer to a VT-x/AMD-V host running the
    /// deployed model.
    pub fn transfer(&self, backend: &str, quantity: Quantity) -> Transfer {
        results::transfer::mark_of(&self.meta, backend, quantity)
    }
}

/// The badge's short word and CSS class for a mark that does not transfer; None for [`Transfer::Transfers`].
fn short(t: Transfer) -> Option<(&'static str, &'static str)> {
    match t {
        Transfer::Transfers => None,
        Transfer::BareModelOnly => Some(("bare model", "tm-bare")),
        Transfer::EmulatedCpu => Some(("emulated", "tm-emul")),
        Transfer::InterpretedGuestKernel => Some(("interpreted", "tm-interp")),
        Transfer::StandInVmm => Some(("stand-in VMM", "tm-emul")),
    }
}

/// The badge of a mark (empty for [`Transfer::Transfers`]): its short word, the full mark as tooltip.
pub fn badge(t: Transfer) -> String {
    match short(t) {
        None => String::new(),
        Some((word, class)) => {
            format!("<span class=\"tm {class}\" title=\"{}\">{}</span>", esc(t.mark()), esc(word))
        }
    }
}

/// A figure cell (HTML) of `backend` measuring `quantity`, with its mark's badge after it when the figure
/// does not transfer.
pub fn marked(run: &RunData, backend: &str, quantity: Quantity, cell: String) -> String {
    match run.transfer(backend, quantity) {
        Transfer::Transfers => cell,
        t => format!("{cell} {}", badge(t)),
    }
}

/// A table of one backend per row: `cols` is each column's header and the quantity its figures measure
/// (None for a column that is no figure of the backend: its name, a sample count, a setting); `rows` pairs
/// each row's backend with its cells (HTML). Every figure cell gets its mark ([`marked`]).
///
/// Panics when a row has a different number of cells than `cols` (a column added without its quantity).
pub fn marked_table(run: &RunData, cols: &[(&str, Option<Quantity>)], rows: Vec<(String, Vec<String>)>) -> String {
    let headers: Vec<&str> = cols.iter().map(|c| c.0).collect();
    let cells: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(b, row)| {
            assert_eq!(row.len(), cols.len(), "a row of {b} has {} cells for {} columns", row.len(), cols.len());
            row.into_iter()
                .zip(cols)
                .map(|(cell, (_, q))| match q {
                    Some(q) => marked(run, &b, *q, cell),
                    None => cell,
                })
                .collect()
        })
        .collect();
    table(&headers, &cells)
}

/// The mark as chart legends and bar labels carry it: ` [emulated]`, ` [bare model]`, ` [interpreted]`, or
/// empty when the figure transfers (a chart has no tooltips; the page's [`legend`] explains the words).
pub fn chart_note(run: &RunData, backend: &str, quantity: Quantity) -> String {
    short(run.transfer(backend, quantity)).map_or_else(String::new, |(word, _)| format!(" [{word}]"))
}

/// [`chart_note`] of a known mark.
pub fn chart_note_of(t: Transfer) -> String {
    short(t).map_or_else(String::new, |(word, _)| format!(" [{word}]"))
}

/// The legend of the marks, once per page.
pub fn legend() -> String {
    let items: Vec<String> =
        [Transfer::EmulatedCpu, Transfer::InterpretedGuestKernel, Transfer::StandInVmm, Transfer::BareModelOnly]
            .iter()
            .map(|t| {
                let why = match t {
                Transfer::EmulatedCpu => {
                    "the guest CPU was emulated (QEMU TCG): its times, CPU and the emulator's memory say nothing \
                     of a VT-x host; what the guest holds or exposes (guest memory, kernel objects, attack \
                     surface it reaches directly, probe outcomes) transfers and is not marked"
                }
                Transfer::InterpretedGuestKernel => {
                    "KVM here interprets guest kernel code (kvm_pvm): the linux guest's times and CPU do not transfer"
                }
                Transfer::StandInVmm => {
                    "the exits, devices and confinement of the VMM that ran (QEMU under TCG), standing in for the \
                     deployed model's VMM: they describe QEMU here, not the VMM a VT-x host would run"
                }
                _ => {
                    "the bare guest (no OS, Hyperlight-like) describes the bare model only, never a Linux-guest microVM"
                }
            };
                format!("<li>{} {}: {}</li>", badge(*t), esc(t.mark()), esc(why))
            })
            .collect();
    format!(
        "<div class=\"tmlegend\"><b>Transfer marks.</b> A figure without a mark transfers to a host with VT-x/AMD-V \
         running the deployed model (processes, containers and user-space kernels run natively on the host kernel). \
         A marked figure does not:<ul>{}</ul></div>",
        items.concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_figures_that_do_not_transfer_carry_a_badge_with_the_full_mark() {
        assert_eq!(badge(Transfer::Transfers), "");
        let b = badge(Transfer::EmulatedCpu);
        assert!(b.contains("title=\"emulated: does not transfer\"") && b.contains(">emulated<"), "{b}");
        let l = legend();
        for t in
            [Transfer::EmulatedCpu, Transfer::InterpretedGuestKernel, Transfer::StandInVmm, Transfer::BareModelOnly]
        {
            assert!(l.contains(&badge(t)) && l.contains(t.mark()), "{t:?} in {l}");
        }
    }

    /// The `<tr>` of `backend` in the `<section id=...>` of `html`.
    fn row_in(html: &str, section: &str, backend: &str) -> String {
        let start = html.find(&format!("<section id=\"{section}\">")).unwrap();
        let sec = &html[start..start + html[start..].find("</section>").unwrap()];
        let at = sec.find(&format!("</span>{backend}</span>")).unwrap_or_else(|| panic!("{backend} in {section}"));
        let row = &sec[sec[..at].rfind("<tr>").unwrap()..];
        row[..row.find("</tr>").unwrap()].to_string()
    }

    /// A fixture run with an emulated linux guest (qemu-tcg) on a kvm_pvm host: its startup figures are
    /// marked as not transferring, the attack surface its guest reaches directly is not marked (it
    /// transfers) while its VMM's side (QEMU's exits and confinement) is marked as a stand-in's, the bare guest's
    /// figures are marked as its model's only, and the legend is on the page once.
    #[test]
    fn an_emulated_guests_startup_is_marked_and_its_attack_surface_is_not() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write_with_emulated_guest(d.path()).unwrap();
        let mut sums: Vec<results::StartupSummary> = rd.read_csv().unwrap();
        let mut tcg: Vec<_> = sums.iter().filter(|s| s.backend == "microvm").cloned().collect();
        tcg.iter_mut().for_each(|s| s.backend = "qemu-tcg".into());
        sums.extend(tcg);
        rd.write_csv(&sums).unwrap();
        let mut surface: Vec<results::AttackSurfaceRow> = rd.read_csv().unwrap();
        let mut row = surface.iter().find(|r| r.backend == "microvm").unwrap().clone();
        row.backend = "qemu-tcg".into();
        surface.push(row);
        rd.write_csv(&surface).unwrap();
        let html = std::fs::read_to_string(crate::render(&rd).unwrap()).unwrap();
        let emulated = badge(Transfer::EmulatedCpu);
        let start = row_in(&html, "startup", "qemu-tcg");
        assert_eq!(start.matches(&emulated).count(), 7, "median, p90, p99, min, max, MAD, rate: {start}");
        let surf = row_in(&html, "surface", "qemu-tcg");
        let first_cells = &surf[..surf
            .find("VMM")
            .unwrap_or(surf.len())
            .min(surf.find(&badge(Transfer::StandInVmm)).unwrap_or(surf.len()))];
        assert!(surf.contains(">0</a>") && !first_cells.contains("class=\"tm "), "{surf}");
        assert_eq!(surf.matches(&badge(Transfer::StandInVmm)).count(), 2, "columns (b) and (c): {surf}");
        assert!(row_in(&html, "surface", "microvm").contains(&badge(Transfer::BareModelOnly)));
        let container = row_in(&html, "startup", "container");
        assert!(!container.contains("class=\"tm "), "{container}");
        assert_eq!(html.matches("<div class=\"tmlegend\">").count(), 1);
        let rate = std::fs::read_to_string(rd.path().join("launch_rate.svg")).unwrap();
        assert!(rate.contains("qemu-tcg (n=") && rate.contains(" [emulated]"), "chart legends carry the mark");
        assert!(rate.contains(" [bare model]"), "{rate}");
        let container = &rate[rate.find("container (n=").expect("container's legend")..];
        assert!(!container[..container.find('<').unwrap()].contains('['), "a container's figures transfer");
        let cards = &html[html.find("<div class=\"cards\">").unwrap()..html.find("<section id=\"host\">").unwrap()];
        assert!(cards.contains(&emulated) && cards.contains(&badge(Transfer::BareModelOnly)), "{cards}");
    }

    /// Old run.json files (no recorded marks) get them from the rule; recorded marks win.
    #[test]
    fn marks_come_from_run_json_else_from_the_rule() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write_with_emulated_guest(d.path()).unwrap();
        let mut run = RunData::load(&rd).unwrap();
        assert!(run.meta.transfer.is_empty());
        assert_eq!(run.transfer("qemu-tcg", Quantity::Startup), Transfer::EmulatedCpu);
        assert_eq!(run.transfer("qemu-tcg", Quantity::AttackSurface), Transfer::Transfers);
        assert_eq!(run.transfer("microvm", Quantity::AttackSurface), Transfer::BareModelOnly);
        assert_eq!(run.transfer("container", Quantity::Startup), Transfer::Transfers);
        run.meta.transfer = results::transfer::marks(&run.meta);
        run.meta.transfer.iter_mut().for_each(|m| m.transfer = Transfer::InterpretedGuestKernel);
        assert!(marked(&run, "container", Quantity::Startup, "1 ms".into()).contains(">interpreted<"));
    }
}
