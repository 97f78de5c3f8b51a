//! The review report: what it shows, that data and configuration are escaped, and that `report`
//! re-renders a run folder without rescoring.

use super::*;

const HOSTILE: &str = "<script>alert(1)</script>";

/// Parses `report.html` strictly: it is well-formed XML as well as HTML.
fn parse_report(html: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse_with_options(html, roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() })
        .expect("report.html is well-formed")
}

fn text_of(node: roxmltree::Node) -> String {
    node.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect()
}

fn by_id<'a, 'input>(doc: &'a roxmltree::Document<'input>, id: &str) -> roxmltree::Node<'a, 'input> {
    doc.descendants().find(|n| n.attribute("id") == Some(id)).unwrap_or_else(|| panic!("report.html has no #{id}"))
}

fn decode_png(bytes: &[u8]) -> (u32, u32) {
    let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG");
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn the_report_shows_verdict_charts_and_escaped_data() {
    let case = Case::new();
    let traffic = rewrite_sample(&case, "hostile.parquet", |b| {
        let carrier = arrow::compute::cast(b.column_by_name("carrier").unwrap(), &arrow::datatypes::DataType::Utf8).unwrap();
        let values: StringArray = carrier.as_string::<i32>().iter().map(|v| v.map(|v| if v == "UA" { HOSTILE } else { v })).collect();
        replace_column(b, "carrier", Some(Arc::new(values)))
    });
    case.replayed(&case.scenario(&traffic, |s| s));
    let html = std::fs::read_to_string(case.path("out/report.html")).unwrap();
    let summary = case.summary();

    // The hostile segment value is data, never markup.
    assert!(!html.contains(HOSTILE), "the hostile value reached the page unescaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let doc = parse_report(&html);
    assert!(doc.descendants().all(|n| !n.has_tag_name("script")), "the page has a script element");
    let cells = doc.descendants().filter(|n| (n.has_tag_name("td") || n.has_tag_name("th")) && text_of(*n).contains(HOSTILE)).count();
    assert!(cells >= 2, "the hostile carrier should appear (as text) in the per-segment and oracle tables, found {cells}");

    // The verdict banner says what happened and when, and the oracle's grade follows it.
    let outcome = summary["simulation"]["outcome"].as_str().unwrap();
    let words = match outcome {
        "promoted" => "PROMOTED",
        "rolled_back" => "ROLLED BACK",
        _ => "HELD",
    };
    let banner = text_of(by_id(&doc, "verdict"));
    assert!(banner.contains(words), "{banner}");
    assert!(banner.contains(&summary["simulation"]["decided_at"].as_str().unwrap()[..10]), "{banner}");
    let grade = text_of(by_id(&doc, "grade"));
    assert!(grade.to_lowercase().contains(&summary["simulation"]["grade"]["grade"].as_str().unwrap().replace('_', " ")), "{grade}");
    for section in ["timeline", "gates", "segments", "oracle", "exposure", "policy", "provenance"] {
        by_id(&doc, section);
    }
    let provenance = text_of(by_id(&doc, "provenance"));
    for hash in [&summary["models"]["stable"]["blake3"], &summary["models"]["candidate"]["blake3"], &summary["inputs"][0]["blake3"]] {
        assert!(provenance.contains(hash.as_str().unwrap()));
    }

    // Every chart is embedded as a PNG that decodes, and written beside the page.
    let mut files: Vec<String> =
        std::fs::read_dir(case.path("out/charts")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let gates = summary["policy"]["gates"].as_array().unwrap().len();
    for expected in ["timeline.png", "scores.png", "calibration.png", "latency.png"] {
        assert!(files.iter().any(|f| f == expected), "{expected} missing from {files:?}");
    }
    assert_eq!(files.iter().filter(|f| f.starts_with("gate-")).count(), gates, "{files:?}");
    let embedded: Vec<Vec<u8>> = doc
        .descendants()
        .filter(|n| n.has_tag_name("img"))
        .map(|n| {
            use base64::Engine as _;
            let src = n.attribute("src").unwrap();
            let data = src
                .strip_prefix("data:image/png;base64,")
                .unwrap_or_else(|| panic!("an image that is not embedded: {}", &src[..40.min(src.len())]));
            base64::engine::general_purpose::STANDARD.decode(data).unwrap()
        })
        .collect();
    assert_eq!(embedded.len(), files.len());
    for file in &files {
        let bytes = std::fs::read(case.path("out/charts").join(file)).unwrap();
        let (width, height) = decode_png(&bytes);
        assert!(width >= 900 && height >= 400, "{file} is {width}×{height}");
        assert!(embedded.contains(&bytes), "{file} is not the chart embedded in the page");
    }

    // Kept for the browser check of CI (scripts/check-report-in-browser).
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-report");
    let _ = std::fs::remove_dir_all(&keep);
    std::fs::create_dir_all(&keep).unwrap();
    std::fs::copy(case.path("out/report.html"), keep.join("report.html")).unwrap();
}

#[test]
fn report_re_renders_a_run_folder_without_rescoring() {
    let case = Case::new();
    case.replayed(&case.scenario(&repo("data/flights/sample.parquet"), |s| s));
    let out = case.path("out");
    let page = std::fs::read(out.join("report.html")).unwrap();
    let timings = std::fs::read(out.join("timings.json")).unwrap();
    std::fs::remove_file(out.join("report.html")).unwrap();
    std::fs::remove_dir_all(out.join("charts")).unwrap();

    bin().arg("report").arg(&out).assert().success();
    assert!(std::fs::read(out.join("report.html")).unwrap() == page, "the re-rendered page differs");
    assert!(out.join("charts/timeline.png").is_file());
    assert!(std::fs::read(out.join("timings.json")).unwrap() == timings, "report must not rerun anything");

    // A folder that is not a run is named, with the fix.
    let stderr = stderr_of(&bin().arg("report").arg(case.path("cache")).assert().code(2));
    assert!(stderr.contains("summary.json is missing") && stderr.contains("canary-replay run"), "{stderr}");

    // A damaged distributions.json is named, with the fix, and the page is left as it was.
    std::fs::write(out.join("distributions.json"), "{\"of\": 3").unwrap();
    let stderr = stderr_of(&bin().arg("report").arg(&out).assert().code(2));
    assert!(
        stderr.contains("distributions.json") && stderr.contains("cannot be read") && stderr.contains("re-run the scenario"),
        "{stderr}"
    );
    assert!(std::fs::read(out.join("report.html")).unwrap() == page, "a failed render leaves the page as it was");
}

/// The charts of the models' outputs come from the oracle's pass over every request
/// (`distributions.json`): they equal what every request's scores, labels and latencies give,
/// and they are drawn when `scores.parquet` holds a sample or nothing.
#[test]
fn the_output_charts_are_drawn_from_every_request() {
    let case = Case::new();
    let all = case.scenario(&repo("data/flights/sample.parquet"), |s| s + "\n[output]\nscores = \"all\"\n");
    case.replayed(&all);
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(case.path("out/distributions.json")).unwrap()).unwrap();
    let rows = scores(
        &case.path("out/scores.parquet"),
        &["stable_score", "candidate_score", "label", "stable_latency_us", "candidate_latency_us"],
    );
    assert_eq!(rows.len(), 2000);
    let bin = |x: f64, bins: usize| ((x * bins as f64).floor() as usize).min(bins - 1);
    for arm in 0..2 {
        // Binary probabilities: 40 bins over [0, 1].
        let mut histogram = vec![0u64; 40];
        let mut deciles = vec![(0.0, 0.0, 0u64); 10];
        for values in rows.values() {
            let Some(s) = values[arm] else { continue };
            histogram[bin(s, 40)] += 1;
            if let Some(y) = values[2] {
                let c = &mut deciles[bin(s, 10)];
                *c = (c.0 + s, c.1 + y, c.2 + 1);
            }
        }
        let got: Vec<u64> = d["histograms"][arm].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(got, histogram, "score histogram of arm {arm}");
        let curve = d["calibration"][arm].as_array().unwrap();
        let expected: Vec<&(f64, f64, u64)> = deciles.iter().filter(|c| c.2 > 0).collect();
        assert_eq!(curve.len(), expected.len());
        for (point, (s, y, n)) in curve.iter().zip(expected) {
            assert_eq!(point[2].as_u64().unwrap(), *n);
            assert!(
                (point[0].as_f64().unwrap() - s / *n as f64).abs() < 1e-12 && (point[1].as_f64().unwrap() - y / *n as f64).abs() < 1e-12,
                "{point}"
            );
        }
        // The latency distribution: every measurement counted, its quantiles within a bin (3.7%).
        let mut measured: Vec<f64> = rows.values().filter_map(|v| v[3 + arm]).collect();
        measured.sort_by(f64::total_cmp);
        assert!(!measured.is_empty());
        assert_eq!(d["latency_measured"][arm].as_u64().unwrap(), measured.len() as u64);
        let cdf = d["latency_cdf_us"][arm].as_array().unwrap();
        let median = measured[(measured.len() - 1) / 2];
        let at_half = cdf.iter().find(|p| p[1].as_f64().unwrap() >= 0.5).unwrap()[0].as_f64().unwrap();
        assert!(at_half >= median && at_half <= median * 1.04, "median {median} µs, CDF reaches one half at {at_half} µs");
    }
    assert_eq!(d["of"], "every replayed request");

    // With no scores.parquet the report still draws them, and says on what.
    let none = case.scenario(&repo("data/flights/sample.parquet"), |s| s + "\n[output]\nscores = \"none\"\n");
    case.replayed(&none);
    assert!(!case.path("out/scores.parquet").exists());
    for chart in ["scores.png", "calibration.png", "latency.png"] {
        assert!(case.path("out/charts").join(chart).is_file(), "{chart} is drawn without scores.parquet");
    }
    let page = std::fs::read_to_string(case.path("out/report.html")).unwrap();
    assert!(page.contains("scores on every replayed request (40 bins)"), "the charts say what they are drawn from");
}
