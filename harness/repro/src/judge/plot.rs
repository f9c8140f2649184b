//! Charts for `repro report`: one line per run against iteration, as SVG
//! and PNG, drawn with plotters.
//!
//! Fonts never come from the machine. plotters draws PNG text with
//! ab_glyph from the DejaVu Sans file compiled into repro. Its SVG backend,
//! though, writes `<text font-family=...>` and leaves the font to whoever
//! views the file, so [`OutlinedSvg`] wraps it and draws every label as
//! filled glyph outlines from the same embedded font: the SVG looks the
//! same everywhere and needs no font at all.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Once;

use ab_glyph::{Font, FontRef, OutlineCurve, ScaleFont};
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters_backend::{
    text_anchor::{HPos, VPos},
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};
use repro_proto::ProbeStats;

/// DejaVu Sans (Bitstream Vera licence, assets/DejaVuSans.LICENSE).
pub(crate) const FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
/// The family name the embedded font is registered under.
const FAMILY: &str = "repro-sans";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT_BYTES).is_err() {
            panic!("the embedded DejaVu Sans does not parse");
        }
    });
}

/// One line: a run's values against iteration.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Chart {
    pub title: String,
    pub y_label: String,
    /// Log scale on y (latencies spanning decades).
    pub log_y: bool,
    pub series: Vec<Series>,
}

pub(crate) const WIDTH: u32 = 900;
pub(crate) const HEIGHT: u32 = 520;

/// Distinct, colour-blind-friendly line colours (Okabe-Ito), then plotters' palette.
fn colour(i: usize) -> RGBColor {
    const OKABE_ITO: [RGBColor; 7] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 0, 0),
    ];
    OKABE_ITO.get(i).copied().unwrap_or_else(|| {
        let c = Palette99::pick(i).to_rgba();
        RGBColor(c.0, c.1, c.2)
    })
}

/// The points of `s` that are drawn: finite, clamped to what a probe can
/// measure. A run directory is outside data, and plotters' log axis never
/// ends its key points for a range reaching down to 1e-308.
fn plotted<'a>(chart: &'a Chart, s: &'a Series) -> impl Iterator<Item = (f64, f64)> + 'a {
    s.points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!chart.log_y || *y >= ProbeStats::MIN_US))
        .map(|&(x, y)| (x, y.min(ProbeStats::MAX_US)))
}

fn bounds(chart: &Chart) -> (f64, f64, f64, f64) {
    let pts = chart.series.iter().flat_map(|s| plotted(chart, s));
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in pts {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !y0.is_finite() {
        (y0, y1) = (1.0, 10.0);
    }
    if chart.log_y {
        // Out to the decades around the data: plotters' log axis labels
        // powers of ten, and a range inside one decade (a flat 25-30 us
        // curve) drew no y label at all.
        let decade_below = 10f64.powf((y0 / 1.5).log10().floor());
        let decade_above = 10f64.powf((y1 * 1.5).log10().ceil());
        (0.0, x1, decade_below.max(ProbeStats::MIN_US / 2.0), decade_above.min(ProbeStats::MAX_US * 2.0))
    } else {
        let pad = ((y1 - y0) * 0.08).max(1.0);
        (0.0, x1, (y0 - pad).max(0.0), y1 + pad)
    }
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, plotters::coord::Shift>, chart: &Chart) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font();
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing {:?}: {e}", chart.title);
    root.fill(&WHITE).map_err(err)?;
    let (x0, x1, y0, y1) = bounds(chart);
    let font = |size: f64| (FAMILY, size).into_font();
    let mut builder = ChartBuilder::on(&root);
    builder.caption(&chart.title, font(22.0)).margin(14).x_label_area_size(44).y_label_area_size(76);
    macro_rules! body {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc("namespaces churned (iteration)")
                .y_desc(chart.y_label.as_str())
                .label_style(font(14.0))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| if *y >= 100.0 || *y == y.round() { format!("{y:.0}") } else { format!("{y:.1}") })
                .axis_desc_style(font(15.0))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(err)?;
            for (i, s) in chart.series.iter().enumerate() {
                let c = colour(i);
                let pts = plotted(chart, s);
                ctx.draw_series(LineSeries::new(pts, Color::stroke_width(&c, 2)))
                    .map_err(err)?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], Color::stroke_width(&c, 3)));
            }
            ctx.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .label_font(font(14.0))
                .draw()
                .map_err(err)?;
        }};
    }
    if chart.log_y {
        body!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).map_err(err)?);
    } else {
        body!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?);
    }
    root.present().map_err(err)?;
    Ok(())
}

/// The chart as an SVG document whose text is glyph outlines.
pub(crate) fn svg(chart: &Chart) -> Result<String> {
    let mut out = String::new();
    let labels = Rc::new(RefCell::new(String::new()));
    {
        let backend = OutlinedSvg { inner: SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)), labels: labels.clone(), font: font_ref() };
        draw(backend.into_drawing_area(), chart)?;
    }
    let at = out.rfind("</svg>").context("plotters wrote no closing </svg>")?;
    out.insert_str(at, &labels.borrow());
    Ok(out)
}

/// The chart as a PNG file: drawn into an RGB buffer by plotters, encoded
/// by the `png` crate (plotters' own encoder would bring the whole `image`
/// crate and its JPEG decoder into every build for this one call).
pub(crate) fn png(chart: &Chart, path: &Path) -> Result<()> {
    let mut rgb = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    draw(BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area(), chart)?;
    let mut bytes = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut bytes, WIDTH, HEIGHT);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder.write_header().and_then(|mut w| w.write_image_data(&rgb)).context("encoding the chart as PNG")?;
    crate::atomic::write_by_path(path, |tmp| std::fs::write(tmp, &bytes).with_context(|| format!("writing {}", path.display())))
}

fn font_ref() -> FontRef<'static> {
    FontRef::try_from_slice(FONT_BYTES).expect("the embedded DejaVu Sans parses")
}

/// plotters' SVG backend with text drawn as filled outlines of the embedded
/// font (see the module comment). Everything else goes to the inner backend;
/// labels collect in `labels` and are appended at the end of the document,
/// above the plot, which is where labels belong anyway.
struct OutlinedSvg<'a> {
    inner: SVGBackend<'a>,
    labels: Rc<RefCell<String>>,
    font: FontRef<'static>,
}

impl OutlinedSvg<'_> {
    /// An SVG path for `text`, laid out the way plotters lays out ab_glyph
    /// text (box height size/1.24, baseline at size/2), then anchored and
    /// rotated as plotters' default `draw_text` does.
    fn text_path<S: BackendTextStyle>(&self, text: &str, style: &S, pos: BackendCoord) -> String {
        let size = style.size() as f32;
        let font = self.font.as_scaled(size);
        let (hs, vs) = (font.h_scale_factor(), font.v_scale_factor());
        let mut width = 0.0f32;
        let mut prev = None;
        let mut placed = Vec::new();
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                width += font.kern(p, id);
            }
            placed.push((id, width));
            width += font.h_advance(id);
            prev = Some(id);
        }
        let height = size / 1.24;
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Right => -width,
            HPos::Center => -width / 2.0,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0.0,
            VPos::Center => -height / 2.0,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let point = |x0: f32, p: ab_glyph::Point| -> String {
            let (lx, ly) = (x0 + p.x * hs + dx, size / 2.0 - p.y * vs + dy);
            // FontTransform rotates integer offsets; scale up to keep sub-pixel precision.
            let (tx, ty) = trans.transform((lx * 64.0) as i32, (ly * 64.0) as i32);
            format!("{:.2} {:.2}", pos.0 as f32 + tx as f32 / 64.0, pos.1 as f32 + ty as f32 / 64.0)
        };
        let mut d = String::new();
        for (id, x0) in placed {
            let Some(outline) = self.font.outline(id) else { continue };
            let mut end: Option<ab_glyph::Point> = None;
            for curve in &outline.curves {
                let (start, last) = match curve {
                    OutlineCurve::Line(a, b) => (*a, *b),
                    OutlineCurve::Quad(a, _, b) => (*a, *b),
                    OutlineCurve::Cubic(a, _, _, b) => (*a, *b),
                };
                if end != Some(start) {
                    if end.is_some() {
                        d.push('Z');
                    }
                    d.push_str(&format!("M{}", point(x0, start)));
                }
                match curve {
                    OutlineCurve::Line(_, b) => d.push_str(&format!("L{}", point(x0, *b))),
                    OutlineCurve::Quad(_, c, b) => d.push_str(&format!("Q{} {}", point(x0, *c), point(x0, *b))),
                    OutlineCurve::Cubic(_, c1, c2, b) => d.push_str(&format!("C{} {} {}", point(x0, *c1), point(x0, *c2), point(x0, *b))),
                }
                end = Some(last);
            }
            if end.is_some() {
                d.push('Z');
            }
        }
        let c = style.color();
        format!("<path d=\"{d}\" fill=\"#{:02X}{:02X}{:02X}\" opacity=\"{}\"/>\n", c.rgb.0, c.rgb.1, c.rgb.2, c.alpha)
    }
}

impl DrawingBackend for OutlinedSvg<'_> {
    type ErrorType = <SVGBackend<'static> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(&mut self, a: BackendCoord, b: BackendCoord, s: &S) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(a, b, s)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(a, b, s, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        s: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, s)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        c: BackendCoord,
        r: u32,
        s: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(c, r, s, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        v: I,
        s: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(v, s)
    }
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        if style.color().alpha > 0.0 {
            let path = self.text_path(text, style, pos);
            self.labels.borrow_mut().push_str(&path);
        }
        Ok(())
    }
    fn estimate_text_size<S: BackendTextStyle>(&self, text: &str, style: &S) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        self.inner.estimate_text_size(text, style)
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(log_y: bool) -> Chart {
        Chart {
            title: "ipv6 open() p50".into(),
            y_label: "microseconds".into(),
            log_y,
            series: vec![
                Series { label: "buggy".into(), points: (0..20).map(|i| (i as f64 * 150.0, 100.0 + i as f64 * 100.0)).collect() },
                Series { label: "fixed".into(), points: (0..20).map(|i| (i as f64 * 150.0, 60.0)).collect() },
            ],
        }
    }

    #[test]
    fn svg_text_is_outlines_not_machine_fonts() {
        let s = svg(&chart(true)).unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"), "{}", &s[..200.min(s.len())]);
        assert!(!s.contains("<text"), "an SVG label depends on the viewer's fonts");
        assert!(!s.contains("font-family"));
        // Title, axis descriptions, tick labels and two legend entries.
        assert!(s.matches("<path d=\"M").count() >= 6, "labels were not drawn");
        assert!(s.matches("<polyline").count() >= 2, "two series");
    }

    #[test]
    fn png_is_drawn_with_the_embedded_font() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.png");
        png(&chart(false), &p).unwrap();
        let mut reader = ::png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap())).read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!((info.width, info.height, info.color_type), (WIDTH, HEIGHT, ::png::ColorType::Rgb));
        // A white page with dark text and two coloured series on it.
        let pixels: Vec<&[u8]> = rgb.chunks(3).collect();
        assert!(pixels.iter().filter(|p| p.iter().all(|&c| c < 80)).count() > 500, "no text drawn");
        assert!(pixels.iter().filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 100).count() > 100, "no coloured series");
    }

    #[test]
    fn figures_no_probe_can_measure_are_clamped_not_looped_over() {
        // A p50 of 2.3e-308 us hung the report in plotters' log-axis key points.
        let series = vec![Series { label: "hostile".into(), points: vec![(1.0, 2.3e-308), (2.0, 1e300), (3.0, f64::NAN), (4.0, 5.0)] }];
        let c = Chart { title: "t".into(), y_label: "us".into(), log_y: true, series };
        let (_, _, y0, y1) = bounds(&c);
        assert!(y0 >= ProbeStats::MIN_US / 2.0 && y1 <= ProbeStats::MAX_US * 2.0, "{y0} {y1}");
        assert!(svg(&c).is_ok());
    }

    #[test]
    fn a_log_axis_reaches_the_decades_around_a_flat_curve() {
        let series = vec![Series { label: "flat".into(), points: vec![(1.0, 25.0), (2.0, 30.0)] }];
        let c = Chart { title: "t".into(), y_label: "us".into(), log_y: true, series };
        let (_, _, y0, y1) = bounds(&c);
        assert_eq!((y0, y1), (10.0, 100.0), "a decade boundary at each end, so the axis has labels");
    }

    #[test]
    fn a_chart_without_points_still_draws() {
        let c = Chart { title: "empty".into(), y_label: "us".into(), log_y: true, series: vec![] };
        assert!(svg(&c).is_ok());
    }
}
