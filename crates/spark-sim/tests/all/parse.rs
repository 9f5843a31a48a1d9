//! Parsing every header variant, and every malformed input with the line it names.

use spark_sim::trace::{TraceSet, parse_durations, parse_invocations, parse_memory, read_text};
use spark_sim::{ParseErrorKind, TraceError};

fn inv(text: &str) -> Result<spark_sim::trace::Invocations, TraceError> {
    parse_invocations(text, "inv.csv")
}

fn err_at(r: Result<impl std::fmt::Debug, TraceError>) -> (Option<usize>, ParseErrorKind) {
    let e = r.expect_err("should fail");
    (e.line(), e.kind().cloned().expect("a parse error"))
}

#[test]
fn original_azure_header_with_trigger() {
    let text = "HashOwner,HashApp,HashFunction,Trigger,1,2,3\no,a,f1,http,1,0,2\no,a,f2,timer,0,0,1\no,b,f3,http,0,5,0\n";
    let i = inv(text).unwrap();
    assert_eq!((i.minutes, i.first_minute), (3, 1));
    assert_eq!(i.apps.len(), 2);
    assert_eq!(i.apps[0].app, "a");
    assert_eq!(i.apps[0].functions, vec!["f1", "f2"]);
    assert_eq!(
        i.apps[0].counts,
        vec![(0, 1), (2, 3)],
        "functions of one app are summed per minute"
    );
    assert_eq!(i.apps[1].counts, vec![(1, 5)]);
}

#[test]
fn in_vitro_header_in_another_order() {
    let text = "HashFunction,HashOwner,HashApp,minute_1,minute_2\nf,o,a,0,3\r\nf2,o2,b,1,1\r\n";
    let i = inv(text).unwrap();
    assert_eq!(i.minutes, 2);
    assert_eq!(i.apps[0].counts, vec![(1, 3)]);
    assert_eq!(i.apps[1].counts, vec![(0, 1), (1, 1)]);
}

#[test]
fn minute_columns_may_start_at_an_offset_and_be_quoted() {
    let text = "\"HashApp\",HashFunction,HashOwner,480,481,482\n\"a,1\",f,o,0,0,7\n";
    let i = inv(text).unwrap();
    assert_eq!((i.minutes, i.first_minute), (3, 480));
    assert_eq!(i.apps[0].app, "a,1");
    assert_eq!(i.apps[0].counts, vec![(2, 7)]);
}

#[test]
fn invocation_errors_name_their_line() {
    let h = "HashOwner,HashApp,HashFunction,1,2\n";
    let cases: Vec<(String, Option<usize>, ParseErrorKind)> = vec![
        (String::new(), None, ParseErrorKind::NoHeader),
        (h.to_owned(), None, ParseErrorKind::NoRows),
        (
            format!("{h}o,a,f,0,0\n"),
            None,
            ParseErrorKind::NoInvocations,
        ),
        (
            "HashOwner,HashFunction,1\n".into(),
            Some(1),
            ParseErrorKind::MissingColumn("HashApp"),
        ),
        (
            "HashOwner,HashApp,1\n".into(),
            Some(1),
            ParseErrorKind::MissingColumn("HashFunction"),
        ),
        (
            "HashApp,HashFunction,1\n".into(),
            Some(1),
            ParseErrorKind::MissingColumn("HashOwner"),
        ),
        (
            "HashOwner,HashApp,HashFunction\n".into(),
            Some(1),
            ParseErrorKind::NoMinuteColumns,
        ),
        (
            "HashOwner,HashApp,HashFunction,Average,1\n".into(),
            Some(1),
            ParseErrorKind::UnknownColumn("Average".into()),
        ),
        (
            "HashOwner,HashApp,HashApp,HashFunction,1\n".into(),
            Some(1),
            ParseErrorKind::DuplicateColumn("HashApp".into()),
        ),
        (
            "HashOwner,HashApp,HashFunction,1,3\n".into(),
            Some(1),
            ParseErrorKind::NonConsecutiveMinutes {
                previous: 1,
                found: "3".into(),
            },
        ),
        (
            format!("{h}o,a,f,1,2\no,b,f,1\n"),
            Some(3),
            ParseErrorKind::FieldCount {
                expected: 5,
                found: 4,
            },
        ),
        (
            format!("{h}o,a,f,1,2\n\no,b,f,1,2,3\n"),
            Some(4),
            ParseErrorKind::FieldCount {
                expected: 5,
                found: 6,
            },
        ),
        (
            format!("{h}o,a,f,1,x\n"),
            Some(2),
            ParseErrorKind::BadNumber {
                column: "2".into(),
                value: "x".into(),
                what: "integer count",
            },
        ),
        (
            format!("{h}o,a,f,-1,0\n"),
            Some(2),
            ParseErrorKind::BadNumber {
                column: "1".into(),
                value: "-1".into(),
                what: "integer count",
            },
        ),
        (
            format!("{h}o,a,f,1.5,0\n"),
            Some(2),
            ParseErrorKind::BadNumber {
                column: "1".into(),
                value: "1.5".into(),
                what: "integer count",
            },
        ),
        (
            format!("{h}o,,f,1,0\n"),
            Some(2),
            ParseErrorKind::EmptyId("HashApp"),
        ),
        (
            format!("{h}o,\"a,f,1,0\n"),
            Some(2),
            ParseErrorKind::UnterminatedQuote,
        ),
    ];
    for (text, line, kind) in cases {
        assert_eq!(err_at(inv(&text)), (line, kind.clone()), "input {text:?}");
    }
}

#[test]
fn the_last_minute_number_is_followed_by_none() {
    // Found by the `trace` fuzz target: `u64::MAX + 1` overflowed (a panic in debug builds; in
    // release it wrapped, taking `0` for the minute after the last one).
    for next in ["0", "1"] {
        let text =
            format!("HashOwner,HashApp,HashFunction,18446744073709551615,{next}\no,a,f,1,1\n");
        let (line, kind) = err_at(inv(&text));
        assert_eq!(line, Some(1));
        assert!(
            matches!(
                kind,
                ParseErrorKind::NonConsecutiveMinutes {
                    previous: u64::MAX,
                    ..
                }
            ),
            "{kind:?}"
        );
    }
}

#[test]
fn sums_past_the_largest_number_are_refused_at_their_row() {
    // Found by the `trace` fuzz target: every value finite, their sum infinite, and an infinite
    // (or NaN) duration or memory went on into the replay.
    let e =
        parse_durations("HashApp,Average,Count\na,1e308,1\na,1e308,1\n", "run.csv").unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert_eq!(
        e.to_string(),
        "run.csv:3: app `a`: the sum of `Average` over its rows is too large"
    );
    let e = parse_durations(
        "HashApp,Average,Count\na,1,1e308\nb,1,1\na,1,1e308\n",
        "run.csv",
    )
    .unwrap_err();
    assert_eq!(
        (e.line(), e.kind()),
        (
            Some(4),
            Some(&ParseErrorKind::SumTooLarge {
                app: "a".into(),
                column: "Count"
            })
        )
    );
    let e = parse_memory("HashApp,AverageAllocatedMb\na,1e308\na,1e308\n", "mem.csv").unwrap_err();
    assert_eq!(e.line(), Some(3));
    let d = parse_durations(
        "HashApp,Average,Count\na,1.7976931348623157e308,1\n",
        "run.csv",
    )
    .unwrap();
    assert_eq!(d.by_app["a"], f64::MAX, "the largest value alone is kept");
}

#[test]
fn a_truncated_file_fails_on_its_last_line() {
    let full = "HashOwner,HashApp,HashFunction,1,2,3\no,a,f,1,2,3\no,b,f,4,5,6\n";
    let cut = &full[..full.len() - 4];
    let e = inv(cut).unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.to_string(), "inv.csv:3: expected 6 fields, found 5");
}

#[test]
fn durations_are_count_weighted_per_app() {
    let text = "HashOwner,HashApp,HashFunction,Average,Count,Minimum\no,a,f1,100,3,1\no,a,f2,500,1,1\no,b,f3,40,0,1\no,b,f4,60,0,1\n";
    let d = parse_durations(text, "run.csv").unwrap();
    assert_eq!(d.by_app["a"], 200.0);
    assert_eq!(d.by_app["b"], 50.0, "all counts 0: plain mean");
}

#[test]
fn memory_is_summed_over_an_apps_rows() {
    let text = "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1\no,a,10,100,90\no,a,10,50,40\no,b,3,70,60\n";
    let m = parse_memory(text, "mem.csv").unwrap();
    assert_eq!((m.by_app["a"], m.by_app["b"]), (150.0, 70.0));
}

#[test]
fn attribute_file_errors_name_their_line() {
    let e = parse_durations("HashOwner,HashApp,Average\no,a,1\n", "run.csv").unwrap_err();
    assert_eq!(
        (e.line(), e.kind()),
        (Some(1), Some(&ParseErrorKind::MissingColumn("Count")))
    );
    let e = parse_durations("HashApp,Average,Count\na,1,2\na,slow,2\n", "run.csv").unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert_eq!(
        e.to_string(),
        "run.csv:3: column `Average`: `slow` is not a valid non-negative number"
    );
    let e = parse_memory("HashApp,AverageAllocatedMb\na,1\nb\n", "mem.csv").unwrap_err();
    assert_eq!(e.line(), Some(3));
    let e = parse_memory("HashApp,AverageAllocatedMb\n", "mem.csv").unwrap_err();
    assert_eq!(e.kind(), Some(&ParseErrorKind::NoRows));
}

#[test]
fn assembly_joins_attributes_with_documented_defaults() {
    let inv = (
        "inv.csv",
        "HashOwner,HashApp,HashFunction,1,2\no,a,f,1,0\no,b,g,0,1\no,c,h,1,1\n",
    );
    let run = (
        "run.csv",
        "HashOwner,HashApp,HashFunction,Average,Count\no,a,f,120,4\n",
    );
    let mem = (
        "mem.csv",
        "HashOwner,HashApp,AverageAllocatedMb\no,a,100\no,b,300\n",
    );
    let t = TraceSet::parse(inv, Some(run), Some(mem)).unwrap();
    let get = |id: &str| t.apps.iter().find(|a| a.id == id).unwrap();
    assert_eq!((get("a").duration_ms, get("a").memory_mb), (120.0, 100.0));
    assert_eq!(get("b").duration_ms, 0.0, "unknown duration is 0");
    assert_eq!(
        get("c").memory_mb,
        200.0,
        "unknown memory is the median of the memory file"
    );
    let bare = TraceSet::parse(inv, None, None).unwrap();
    assert!(
        bare.apps
            .iter()
            .all(|a| a.memory_mb == spark_sim::trace::DEFAULT_MEMORY_MB)
    );
    assert_eq!(bare.invocations(), 4);
}

#[test]
fn synthetic_traces_round_trip_through_both_header_styles() {
    let t = spark_sim::synth::mixed(25, 300, 2);
    for in_vitro in [true, false] {
        let csv = spark_sim::synth::invocations_csv(&t, in_vitro);
        let back = TraceSet::parse(("inv.csv", &csv), None, None).unwrap();
        assert_eq!(back.minutes, t.minutes);
        let with_calls: Vec<_> = t.apps.iter().filter(|a| !a.counts.is_empty()).collect();
        for a in with_calls {
            assert_eq!(
                back.apps.iter().find(|b| b.id == a.id).unwrap().counts,
                a.counts
            );
        }
    }
}

#[test]
fn readers_and_files() {
    assert!(read_text(&b"\xff\xfe"[..], "bin").is_err());
    assert_eq!(read_text(&b"abc"[..], "x").unwrap(), "abc");
    let missing =
        TraceSet::load(std::path::Path::new("/nonexistent/inv.csv"), None, None).unwrap_err();
    assert!(matches!(missing, TraceError::Io { .. }));
    assert!(missing.to_string().starts_with("/nonexistent/inv.csv: "));
}
