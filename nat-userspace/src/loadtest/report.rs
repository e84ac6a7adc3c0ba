//! The load-test report: JSON with stable field names (documented in
//! docs/loadtest.md), a human summary, and an SVG of the per-second samples (offered and
//! delivered rate, latency percentiles) drawn with plotters' SVG backend: no font
//! library, text is emitted as SVG `<text>` for the viewer to render.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{rx::Sample, verify::Reason};

/// Latency percentiles, nanoseconds (0 when nothing was received).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Latency of the packets received in one second, nanoseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowLatency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl WindowLatency {
    pub fn from_histogram(h: &Histogram<u64>) -> Option<WindowLatency> {
        (!h.is_empty()).then(|| WindowLatency {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }
}

/// One sample of the run: the interval ending `t_s` seconds after sending started (whole
/// seconds, then the end of the run, the drain included).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    pub t_s: f64,
    /// Cumulative counts at `t_s`.
    pub sent: u64,
    pub verified: u64,
    pub incorrect: u64,
    /// Rates over the interval.
    pub offered_pps: f64,
    pub delivered_pps: f64,
    /// Latency of the packets received in the interval (`null` when none).
    pub latency_ns: Option<WindowLatency>,
}

/// One incorrect packet kept for the report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IncorrectPacket {
    pub seq: u64,
    pub reasons: Vec<String>,
    /// The first address field at fault (`via`, `contact`, `sdp_o`, `sdp_c`, `sdp_rtcp`).
    pub field: Option<String>,
    pub ip_src: String,
    /// The SIP message (lossy UTF-8, at most 2000 bytes).
    pub message: String,
}

impl IncorrectPacket {
    pub fn from_sample(s: &Sample) -> IncorrectPacket {
        let (ip_src, message) = match crate::wire::parse(&s.frame, crate::wire::Link::Ethernet) {
            Ok(l) => {
                let msg = l
                    .udp(&s.frame)
                    .and_then(|(_, _, start, len)| s.frame.get(start..start + len))
                    .unwrap_or(&[]);
                let cut = &msg[..msg.len().min(2000)];
                (l.src.to_string(), String::from_utf8_lossy(cut).into_owned())
            }
            Err(_) => (String::new(), String::new()),
        };
        IncorrectPacket {
            seq: s.seq,
            reasons: s.reasons.iter().map(|r| r.name().to_string()).collect(),
            field: s.field.map(|f| f.name().to_string()),
            ip_src,
            message,
        }
    }
}

/// The whole result. Field names are stable (scripts and tests read them).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// Template names (built-in name, file name, `pcap:<file>#<n>`), comma-separated.
    pub template: String,
    pub templates: usize,
    /// Ethernet frame size of the first template, bytes.
    pub frame_bytes: usize,
    pub flows: u32,
    pub cores: usize,
    /// The requested rate (`null` with `--max`).
    pub target_pps: Option<f64>,
    /// Time the generator sent for, seconds (the denominator of every rate).
    pub duration_s: f64,
    /// Packets put on the link.
    pub sent: u64,
    pub offered_pps: f64,
    pub tx_zero_copy: bool,
    pub tx_kicks: u64,
    /// Batches that found every UMEM frame in flight.
    pub tx_starved: u64,
    /// Kicks refused by a busy device.
    pub tx_busy: u64,
    /// Whether a receive side ran (`--rx-interface`).
    pub receive: bool,
    /// Frames the receive sockets got (ours and foreign).
    pub received: u64,
    /// Frames that carried the generator's header and were checked.
    pub verified: u64,
    pub correct: u64,
    pub incorrect: u64,
    /// Frames on the receive sockets that were not the generator's.
    pub foreign: u64,
    /// Verified frames per second of `duration_s`.
    pub delivered_pps: f64,
    /// `sent - verified` (0 when nothing was received: see `receive`).
    pub loss: u64,
    pub loss_pct: f64,
    /// Frames the kernel dropped at the receive sockets (ring full, no buffer).
    pub rx_kernel_dropped: u64,
    pub rx_xdp_mode: String,
    pub rx_zero_copy: bool,
    /// One-way latency (send timestamp in the payload to receive), ns.
    pub latency_ns: Latency,
    /// Every reason, with 0 for the ones that never happened; a packet failing several
    /// checks counts under each.
    pub incorrect_by_reason: BTreeMap<String, u64>,
    pub first_incorrect: Vec<IncorrectPacket>,
    /// Per-second samples (see [`Interval`]).
    #[serde(default)]
    pub per_second: Vec<Interval>,
}

impl Report {
    /// An empty reason map with every reason at 0.
    pub fn reason_map(counts: &[u64; Reason::COUNT]) -> BTreeMap<String, u64> {
        Reason::ALL
            .iter()
            .map(|r| (r.name().to_string(), counts[*r as usize]))
            .collect()
    }

    /// The human summary.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let rate = match self.target_pps {
            Some(r) => format!("target {} pps", r.round()),
            None => "max rate".to_string(),
        };
        s += &format!(
            "sipnat loadtest: {} ({} template{}, {}-byte frames), {} flow{}, {} core{}, {rate}, {:.2} s\n",
            self.template,
            self.templates,
            plural(self.templates as u64),
            self.frame_bytes,
            self.flows,
            plural(u64::from(self.flows)),
            self.cores,
            plural(self.cores as u64),
            self.duration_s
        );
        s += &format!(
            "  offered    {:>10} packets  {:>12} pps  (TX {} mode, {} kicks)\n",
            self.sent,
            fmt_rate(self.offered_pps),
            if self.tx_zero_copy {
                "zero-copy"
            } else {
                "copy"
            },
            self.tx_kicks
        );
        if !self.receive {
            s += "  (no receive side: give --rx-interface to verify and measure latency)\n";
            return s;
        }
        s += &format!(
            "  delivered  {:>10} packets  {:>12} pps  loss {} ({:.3} %)\n",
            self.verified,
            fmt_rate(self.delivered_pps),
            self.loss,
            self.loss_pct
        );
        s += &format!(
            "  verified   {} of {} received: {} correct, {} incorrect{}\n",
            self.verified,
            self.received,
            self.correct,
            self.incorrect,
            if self.foreign > 0 {
                format!(", {} foreign (not the generator's)", self.foreign)
            } else {
                String::new()
            }
        );
        let l = &self.latency_ns;
        if l.count > 0 {
            s += &format!(
                "  latency    p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)\n",
                fmt_ns(l.p50),
                fmt_ns(l.p99),
                fmt_ns(l.p999),
                fmt_ns(l.max),
                l.count
            );
        }
        if self.incorrect == 0 {
            s += "  incorrect  none\n";
        } else {
            s += "  incorrect by reason:\n";
            for (r, n) in self.incorrect_by_reason.iter().filter(|(_, n)| **n > 0) {
                s += &format!("    {r:<26} {n}\n");
            }
            for p in &self.first_incorrect {
                let first = p.message.lines().next().unwrap_or("");
                s += &format!(
                    "    seq {}: {}{} (IP source {}): {first}\n",
                    p.seq,
                    p.reasons.join(", "),
                    p.field
                        .as_deref()
                        .map(|f| format!(" in {f}"))
                        .unwrap_or_default(),
                    p.ip_src
                );
            }
        }
        if self.rx_kernel_dropped > 0 {
            s += &format!(
                "  note: the receive sockets dropped {} frames (ring full): the receiver, not the path, lost them\n",
                self.rx_kernel_dropped
            );
        }
        s
    }
}

/// Writes `report.json` and `report.svg` into `dir` (created if missing); returns their
/// paths.
pub fn write_dir(
    report: &Report,
    dir: &std::path::Path,
) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("report.json");
    let svg = dir.join("report.svg");
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(&json, format!("{text}\n"))?;
    std::fs::write(&svg, report.svg().map_err(std::io::Error::other)?)?;
    Ok((json, svg))
}

/// Series names in the SVG (legend text), in drawing order.
pub const SVG_RATE_SERIES: [&str; 2] = ["offered", "delivered"];
pub const SVG_LATENCY_SERIES: [&str; 4] = ["p50", "p99", "p99.9", "max"];

/// One line of a chart: legend text, points, colour.
type Line = (&'static str, Vec<(f64, f64)>, plotters::style::RGBColor);

/// Draws `lines` (2 px wide) with their legend at `at`.
fn draw_lines<'a, DB, Y>(
    c: &mut plotters::chart::ChartContext<
        'a,
        DB,
        plotters::coord::cartesian::Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
    >,
    lines: Vec<Line>,
    at: plotters::chart::SeriesLabelPosition,
) -> Result<(), String>
where
    DB: plotters::prelude::DrawingBackend + 'a,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    use plotters::prelude::*;
    for (name, data, colour) in lines {
        c.draw_series(LineSeries::new(data, colour.stroke_width(2)))
            .map_err(|x| x.to_string())?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(at)
        .draw()
        .map_err(|x| x.to_string())
}

type Area<'a> =
    plotters::drawing::DrawingArea<plotters::prelude::SVGBackend<'a>, plotters::coord::Shift>;

impl Report {
    /// The SVG: offered and delivered packets per second (top) and latency percentiles
    /// (bottom, logarithmic) over the run's per-second samples.
    pub fn svg(&self) -> Result<String, String> {
        use plotters::prelude::*;
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (960, 720)).into_drawing_area();
            root.fill(&WHITE).map_err(|x| e(&x))?;
            let title = format!(
                "sipnat loadtest: {}, {} flow{}, {} core{}, {}",
                self.template,
                self.flows,
                plural(u64::from(self.flows)),
                self.cores,
                plural(self.cores as u64),
                match self.target_pps {
                    Some(r) => format!("target {} pps", r.round()),
                    None => "max rate".to_string(),
                }
            );
            let root = root.titled(&title, ("sans-serif", 20)).map_err(|x| e(&x))?;
            let (top, bottom) = root.split_vertically(340);
            let t_max = self
                .per_second
                .last()
                .map_or(1.0, |s| s.t_s)
                .max(self.duration_s)
                .max(1e-3);
            self.draw_rates(&top, t_max)?;
            self.draw_latency(&bottom, t_max)?;
            root.present().map_err(|x| e(&x))?;
        }
        Ok(out)
    }

    /// Offered and delivered packets per second, as step lines.
    fn draw_rates(&self, area: &Area<'_>, t_max: f64) -> Result<(), String> {
        use plotters::prelude::*;
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let pts = |f: fn(&Interval) -> f64| -> Vec<(f64, f64)> {
            let mut v = Vec::with_capacity(self.per_second.len() + 1);
            let mut prev = 0.0;
            for s in &self.per_second {
                // Each rate holds over its interval: a step line.
                v.push((prev, f(s)));
                v.push((s.t_s, f(s)));
                prev = s.t_s;
            }
            v
        };
        let offered = pts(|s| s.offered_pps);
        let delivered = pts(|s| s.delivered_pps);
        let y_max = offered
            .iter()
            .chain(&delivered)
            .map(|p| p.1)
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.1;
        let mut c = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .caption("packets per second", ("sans-serif", 16))
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|x| e(&x))?;
        c.configure_mesh()
            .x_desc("seconds")
            .y_desc("pps")
            .y_label_formatter(&|v| fmt_rate(*v))
            .draw()
            .map_err(|x| e(&x))?;
        let lines = vec![
            (SVG_RATE_SERIES[0], offered, BLUE),
            (SVG_RATE_SERIES[1], delivered, GREEN),
        ];
        draw_lines(&mut c, lines, SeriesLabelPosition::LowerRight)
    }

    /// Latency percentiles, µs, on a log scale; intervals without packets are left out.
    fn draw_latency(&self, area: &Area<'_>, t_max: f64) -> Result<(), String> {
        use plotters::prelude::*;
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let lat = |f: fn(&WindowLatency) -> u64| -> Vec<(f64, f64)> {
            let mut v = Vec::new();
            let mut prev = 0.0;
            for s in &self.per_second {
                if let Some(l) = &s.latency_ns {
                    let us = (f(l) as f64 / 1e3).max(0.1);
                    v.push((prev, us));
                    v.push((s.t_s, us));
                }
                prev = s.t_s;
            }
            v
        };
        let series = vec![
            (SVG_LATENCY_SERIES[0], lat(|l| l.p50), GREEN),
            (SVG_LATENCY_SERIES[1], lat(|l| l.p99), BLUE),
            (SVG_LATENCY_SERIES[2], lat(|l| l.p999), MAGENTA),
            (SVG_LATENCY_SERIES[3], lat(|l| l.max), RED),
        ];
        let hi = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .fold(1.0f64, f64::max)
            * 2.0;
        let lo = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .fold(hi, f64::min)
            .min(hi / 4.0)
            / 2.0;
        let mut c = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .caption(
                if self.receive {
                    "one-way latency (µs, log scale)"
                } else {
                    "one-way latency: no receive side (--rx-interface)"
                },
                ("sans-serif", 16),
            )
            .build_cartesian_2d(0.0..t_max, (lo.max(0.05)..hi).log_scale())
            .map_err(|x| e(&x))?;
        c.configure_mesh()
            .x_desc("seconds")
            .y_desc("µs")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|x| e(&x))?;
        draw_lines(&mut c, series, SeriesLabelPosition::UpperRight)
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub fn fmt_rate(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.3} M", pps / 1e6)
    } else if pps >= 1e3 {
        format!("{:.1} k", pps / 1e3)
    } else {
        format!("{pps:.0}")
    }
}

pub fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(per_second: Vec<Interval>, receive: bool) -> Report {
        Report {
            tool: "sipnat-loadtest".into(),
            version: "0".into(),
            template: "invite".into(),
            templates: 1,
            frame_bytes: 849,
            flows: 4,
            cores: 1,
            target_pps: Some(1000.0),
            duration_s: 3.0,
            sent: 3000,
            offered_pps: 1000.0,
            tx_zero_copy: false,
            tx_kicks: 1,
            tx_starved: 0,
            tx_busy: 0,
            receive,
            received: 3000,
            verified: 3000,
            correct: 3000,
            incorrect: 0,
            foreign: 0,
            delivered_pps: 1000.0,
            loss: 0,
            loss_pct: 0.0,
            rx_kernel_dropped: 0,
            rx_xdp_mode: "generic".into(),
            rx_zero_copy: false,
            latency_ns: Latency::default(),
            incorrect_by_reason: BTreeMap::new(),
            first_incorrect: Vec::new(),
            per_second,
        }
    }

    fn second(t: f64, pps: f64, p50: u64) -> Interval {
        Interval {
            t_s: t,
            sent: (t * pps) as u64,
            verified: (t * pps) as u64,
            incorrect: 0,
            offered_pps: pps,
            delivered_pps: pps * 0.9,
            latency_ns: Some(WindowLatency {
                count: pps as u64,
                p50,
                p90: p50 * 2,
                p99: p50 * 10,
                p999: p50 * 50,
                max: p50 * 100,
            }),
        }
    }

    #[test]
    fn svg_has_both_charts_and_every_series() {
        let r = report(
            vec![
                second(1.0, 1000.0, 20_000),
                second(2.0, 1200.0, 30_000),
                second(3.0, 800.0, 25_000),
            ],
            true,
        );
        let svg = r.svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for name in SVG_RATE_SERIES.iter().chain(&SVG_LATENCY_SERIES) {
            // plotters puts a <text>'s content on a line of its own.
            assert!(
                svg.contains(&format!(">\n{name}\n</text>")),
                "legend {name} missing"
            );
        }
        assert!(svg.contains("packets per second") && svg.contains("one-way latency"));
        // Six series, each a polyline (legend samples are paths too).
        assert!(svg.matches("<polyline").count() >= 6, "{svg}");
        // No font file is needed: text is plain <text>.
        assert!(svg.contains("<text"));
    }

    #[test]
    fn svg_without_samples_or_receive_side_still_renders() {
        let svg = report(Vec::new(), false).svg().unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("no receive side"));
    }

    #[test]
    fn report_with_samples_round_trips_and_old_json_still_reads() {
        let r = report(vec![second(1.0, 1000.0, 20_000)], true);
        let json = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["per_second"][0]["latency_ns"]["p99"], 200_000);
        // A report written before per-second samples existed.
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("per_second");
        let back: Report = serde_json::from_value(old).unwrap();
        assert!(back.per_second.is_empty());
    }
}
