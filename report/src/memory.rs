//! The memory experiment's sections (issue 18 item 3): "Memory give-back" (`memory_giveback.csv`: host
//! memory per instance before, at the peak of and after a working-set burst, with the mechanism that
//! can return freed memory), "Page-cache sharing" (`page_cache.csv`: host memory per instance when N
//! instances of one image read the same files) and "KSM" (`ksm.csv`: memory the kernel's same-page
//! merging saved per instance, the CPU ksmd spent, and which memory was mergeable at all).
use crate::compare::Fig;
use crate::data::RunData;
use crate::html::{backend, esc, no_rows, not_run, num, section, table};
use crate::registry::{ReportSection, SectionMeta};
use crate::sections::Section;
use crate::units::{fmt_bytes, fmt_secs};
use crate::validity::Figure;
use crate::ReportError;
use results::{ExperimentId, GiveBackRow, KsmRow, PageCacheRow, Record};

/// Memory give-back: `memory_giveback.csv`.
pub struct GiveBack;

impl ReportSection for GiveBack {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "giveback",
            title: "Memory give-back after a burst",
            nav: "Give-back",
            compare_title: Some("Memory give-back"),
            experiment: ExperimentId::Memory,
            csv: GiveBackRow::FILE,
        };
        &M
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(render_giveback(self, run))
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for g in r.memory_giveback.iter().flatten() {
            let key = |m: &str| (self.id().to_string(), g.backend.clone(), m.to_string());
            let after = Figure::count(g.held_after_bytes as f64).samples(g.instances);
            v.push((key("held after the burst"), "bytes".into(), Some(true), Ok(after)));
            let frac = g
                .given_back_fraction
                .map(|f| Figure::count(f.max(0.0)).samples(g.instances))
                .ok_or_else(|| "the burst did not show on the host".to_string());
            v.push((key("fraction given back"), "ratio".into(), Some(false), frac));
        }
        v
    }
}

fn opt_secs(v: Option<f64>, csv: &str) -> String {
    v.map_or_else(|| "<span class=\"na\">never</span>".into(), |s| num(&fmt_secs(s), csv))
}

fn render_giveback(sec: &GiveBack, run: &RunData) -> Section {
    let csv = sec.csv();
    let html = match &run.memory_giveback {
        None => not_run(csv, &sec.why_absent(run)),
        Some(rows) if rows.is_empty() => no_rows(csv, "empty: no backend completed the burst"),
        Some(rows) => {
            let mut rows = rows.clone();
            rows.sort_by_key(|r| run.backend_rank(&r.backend));
            let mut body = String::from(
                "<p>N instances of each backend alive together; each touches M MiB, holds them 1 s, frees them \
                 and idles. Host memory held per instance (mean over the N; the cgroup's memory usage for a \
                 container, else the RSS of the instance's host process, a VMM's including guest memory) right \
                 after ready, at the peak of the burst, and the given time after the free. A VM keeps the guest \
                 pages it touched unless a mechanism returns them: <b>free-page-reporting</b> is QEMU's \
                 virtio-balloon with the guest reporting freed pages; our bare microVM has none (no OS in the \
                 guest to free memory, no balloon). In a linux guest part of the burst may land on guest pages \
                 already resident since boot, so its peak can rise by less than M. <i>Fraction given back</i> = (peak - after) / (peak - \
                 before); <i>half back</i> = seconds after the free until half the burst was back (read at once after the free, then \
                 every 0.5 s, but not while a later instance launches).</p>",
            );
            let t: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        backend(&r.backend),
                        num(&r.instances.to_string(), csv),
                        num(&fmt_bytes(r.burst_bytes as f64), csv),
                        num(&fmt_bytes(r.held_before_bytes as f64), csv),
                        num(&fmt_bytes(r.held_peak_bytes as f64), csv),
                        num(&fmt_bytes(r.held_after_bytes as f64), csv),
                        num(&fmt_secs(r.after_s), csv),
                        r.given_back_fraction.map_or_else(
                            || "<span class=\"na\">-</span>".into(),
                            |f| num(&format!("{:.0}%", f * 100.0), csv),
                        ),
                        opt_secs(r.half_back_s, csv),
                        esc(r.mechanism.as_str()),
                        format!("<small>{}</small>", esc(&r.detail)),
                    ]
                })
                .collect();
            body.push_str(&table(
                &[
                    "backend",
                    "N",
                    "burst",
                    "held before",
                    "held at peak",
                    "held after",
                    "after",
                    "given back",
                    "half back",
                    "mechanism",
                    "accounting",
                ],
                &t,
            ));
            body
        }
    };
    Section { html: section(sec.id(), sec.title(), &html), charts: Vec::new() }
}

/// Page-cache sharing: `page_cache.csv`.
pub struct PageCache;

impl ReportSection for PageCache {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "pagecache",
            title: "Page-cache sharing",
            nav: "Page cache",
            compare_title: Some("Page-cache sharing"),
            experiment: ExperimentId::Memory,
            csv: PageCacheRow::FILE,
        };
        &M
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(render_page_cache(self, run))
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for p in r.page_cache.iter().flatten() {
            let key = (self.id().to_string(), p.backend.clone(), "host memory per instance".to_string());
            let fig =
                p.host_bytes_per_instance.map(|b| Figure::count(b).samples(p.instances)).ok_or_else(|| p.how.clone());
            v.push((key, "bytes".into(), Some(true), fig));
        }
        v
    }
}

fn opt_bytes(v: Option<f64>, csv: &str) -> String {
    v.map_or_else(|| "<span class=\"na\">-</span>".into(), |b| num(&fmt_bytes(b), csv))
}

fn render_page_cache(sec: &PageCache, run: &RunData) -> Section {
    let csv = sec.csv();
    let html = match &run.page_cache {
        None => not_run(csv, &sec.why_absent(run)),
        Some(rows) if rows.is_empty() => no_rows(csv, "empty: no backend read the file set (see the run's warnings)"),
        Some(rows) => {
            let mut rows = rows.clone();
            rows.sort_by_key(|r| run.backend_rank(&r.backend));
            let mut body = String::from(
                "<p>N instances of the same image, each reading the same file set of M MiB (pseudo-random bytes, \
                 read() into a small buffer: page cache, not the instance's own memory), measured once all N \
                 read it. Containers get the image as overlay lower layers: overlayfs reads through to the \
                 lower file, so the N share the host page cache of one inode. A linux guest gets the layers \
                 flattened into a read-only root disk and caches its own copy in guest RAM; QEMU opens the \
                 disk with <code>cache=none</code> (O_DIRECT), so the host caches none of it. The process \
                 baseline reads the host file directly. <i>Growth</i> = the instance's own memory after all N \
                 read minus before its read (a cgroup's usage less its page cache of files, since the first \
                 reader's cgroup is charged the shared pages; else the RSS of its host process, a VMM's guest \
                 RAM included); <i>copy found</i> = pages of the set found in the memory files of its host \
                 processes (a VM's guest RAM, runsc's Sentry memory file): a guest partly caches the set in \
                 pages it had already touched, so its growth understates the copy; <i>private</i> = the larger. \
                 <i>Shared</i> = host page cache of the file read through (mincore), counted once; \
                 <i>per instance</i> = private + shared / N, so it depends on N: rows of different N compare by private and shared, and the capacity planner counts shared once per host at the planned density. Page cache can be evicted under memory pressure: \
                 shared is what stayed cached.</p>",
            );
            let t: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        backend(&r.backend),
                        num(&r.instances.to_string(), csv),
                        num(&fmt_bytes(r.file_bytes as f64), csv),
                        opt_bytes(r.private_growth_bytes_per_instance, csv),
                        opt_bytes(r.copy_bytes_per_instance, csv),
                        opt_bytes(r.private_bytes_per_instance, csv),
                        opt_bytes(r.shared_host_cache_bytes.map(|b| b as f64), csv),
                        opt_bytes(r.host_bytes_per_instance, csv),
                        format!("<small>{}</small>", esc(&r.how)),
                    ]
                })
                .collect();
            body.push_str(&table(
                &[
                    "backend",
                    "N",
                    "file set",
                    "growth",
                    "copy found",
                    "private",
                    "shared (once)",
                    "per instance",
                    "accounting",
                ],
                &t,
            ));
            body
        }
    };
    Section { html: section(sec.id(), sec.title(), &html), charts: Vec::new() }
}

/// KSM: `ksm.csv`.
pub struct Ksm;

impl ReportSection for Ksm {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "ksm",
            title: "Same-page merging (KSM)",
            nav: "KSM",
            compare_title: Some("Same-page merging (KSM)"),
            experiment: ExperimentId::Memory,
            csv: KsmRow::FILE,
        };
        &M
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(render_ksm(self, run))
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for k in r.ksm.iter().flatten() {
            let key = (self.id().to_string(), k.backend.clone(), "saved per instance".to_string());
            let saved = Figure::count(k.saved_bytes_per_instance).samples(k.instances);
            v.push((key, "bytes".into(), Some(false), Ok(saved)));
        }
        v
    }
}

fn render_ksm(sec: &Ksm, run: &RunData) -> Section {
    let csv = sec.csv();
    let html = match &run.ksm {
        None => not_run(csv, &sec.why_absent(run)),
        Some(rows) if rows.is_empty() => {
            no_rows(csv, "empty: KSM was not measured here (see the run's warnings: not available, or in use)")
        }
        Some(rows) => {
            let mut rows = rows.clone();
            rows.sort_by_key(|r| run.backend_rank(&r.backend));
            let mut body = String::from(
                "<p>N instances of each backend holding M MiB each (every page written once by the workload, so \
                 the pages are alike: a best case for merging), then KSM switched on (<code>/sys/kernel/mm/ksm/\
                 run=1</code>; the previous settings are put back afterwards) for the window. <i>Saved per \
                 instance</i> = (<code>pages_sharing</code> at the end of the window - <code>pages_sharing</code> \
                 once KSM rescanned without the instances) x page size / N; <i>ksmd CPU</i> is the CPU time of \
                 the ksmd thread over the window. <i>Held</i> is the per-instance host accounting of the \
                 give-back table: a cgroup's usage drops as pages merge, a process's RSS does not (it counts \
                 a merged page in every process mapping it). Whether memory can be merged at all: the Linux \
                 workload asks for it with <code>prctl(PR_SET_MEMORY_MERGE)</code> (Linux 6.4 and later); a \
                 VMM's guest memory only when the VMM marks it MADV_MERGEABLE, and KSM merges private \
                 anonymous memory only (our VMM and our QEMU command line back guest RAM with a shared memfd). \
                 The last column is read from <code>/proc/PID/smaps</code> (<code>mg</code> flag).</p>",
            );
            let t: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        backend(&r.backend),
                        num(&r.instances.to_string(), csv),
                        num(&fmt_bytes(r.hold_bytes as f64), csv),
                        num(&fmt_bytes(r.saved_bytes_per_instance), csv),
                        num(&fmt_bytes(r.held_before_bytes as f64), csv),
                        num(&fmt_bytes(r.held_after_bytes as f64), csv),
                        num(&fmt_secs(r.ksm_cpu_s), csv),
                        num(&fmt_secs(r.window_s), csv),
                        num(&r.full_scans.to_string(), csv),
                        format!("<small>{}</small>", esc(&r.mergeable)),
                    ]
                })
                .collect();
            body.push_str(&table(
                &[
                    "backend",
                    "N",
                    "held each",
                    "saved per instance",
                    "held before",
                    "held after",
                    "ksmd CPU",
                    "window",
                    "full scans",
                    "mergeable",
                ],
                &t,
            ));
            body
        }
    };
    Section { html: section(sec.id(), sec.title(), &html), charts: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_tables_show_every_row_with_its_mechanism_and_mergeability() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        let run = RunData::load(&rd).unwrap();
        let g = GiveBack.render(&run).unwrap().html;
        assert!(g.contains("free-page-reporting") || g.contains("none"), "{g}");
        assert!(g.contains("process frees") && g.contains("75%"), "{g}");
        let k = Ksm.render(&run).unwrap().html;
        assert!(k.contains("VmFlags mg") && k.contains("ksmd CPU"), "{k}");
        let mut empty = run.clone();
        empty.ksm = Some(Vec::new());
        assert!(Ksm.render(&empty).unwrap().html.contains("not measured here"));
        let p = PageCache.render(&run).unwrap().html;
        assert!(p.contains("16.2") && p.contains("not measured: the bare guest has no file system"), "{p}");
        let figs = PageCache.figures(&run);
        assert_eq!(figs.len(), 2);
        assert!(figs.iter().any(|f| f.1 == "bytes" && f.3.is_err()), "the bare guest's row is a reason, not a zero");
    }
}
