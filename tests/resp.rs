//! Property tests of the RESP scanner: any well-formed value, however nested, is found
//! whole and exactly; every strict prefix asks for more bytes; no input panics.

use proptest::prelude::*;
use vecwal::protocol::resp::{encode_command, parse_command, parse_command_spans, scan};

/// A RESP3 value, as bytes, built from a random tree.
#[derive(Debug, Clone)]
enum V {
    Simple(u8, String),
    Bulk(u8, Vec<u8>),
    Null,
    Agg(u8, Vec<V>),
    Map(Vec<(V, V)>),
    Attr(Vec<(V, V)>, Box<V>),
}

fn encode(v: &V, out: &mut Vec<u8>) {
    match v {
        V::Simple(t, s) => out.extend_from_slice(format!("{}{s}\r\n", *t as char).as_bytes()),
        V::Bulk(t, b) => {
            out.extend_from_slice(format!("{}{}\r\n", *t as char, b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        V::Null => out.extend_from_slice(b"_\r\n"),
        V::Agg(t, items) => {
            out.extend_from_slice(format!("{}{}\r\n", *t as char, items.len()).as_bytes());
            items.iter().for_each(|i| encode(i, out));
        }
        V::Map(kv) => {
            out.extend_from_slice(format!("%{}\r\n", kv.len()).as_bytes());
            for (k, v) in kv {
                encode(k, out);
                encode(v, out);
            }
        }
        V::Attr(kv, inner) => {
            out.extend_from_slice(format!("|{}\r\n", kv.len()).as_bytes());
            for (k, v) in kv {
                encode(k, out);
                encode(v, out);
            }
            encode(inner, out);
        }
    }
}

fn top_kind(v: &V) -> u8 {
    match v {
        V::Simple(t, _) | V::Bulk(t, _) | V::Agg(t, _) => *t,
        V::Null => b'_',
        V::Map(_) => b'%',
        V::Attr(_, inner) => top_kind(inner),
    }
}

fn value() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        (
            prop::sample::select(vec![b'+', b'-', b':', b',', b'#', b'(']),
            "[a-zA-Z0-9 .]{0,12}"
        )
            .prop_map(|(t, s)| V::Simple(t, s)),
        (
            prop::sample::select(vec![b'$', b'!', b'=']),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(t, b)| V::Bulk(t, b)),
        Just(V::Null),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec![b'*', b'~', b'>']),
                prop::collection::vec(inner.clone(), 0..6)
            )
                .prop_map(|(t, i)| V::Agg(t, i)),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(V::Map),
            (
                prop::collection::vec((inner.clone(), inner.clone()), 0..3),
                inner
            )
                .prop_map(|(kv, v)| V::Attr(kv, Box::new(v))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_value_is_found_exactly_and_prefixes_need_more(v in value(), tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut bytes = Vec::new();
        encode(&v, &mut bytes);
        let len = bytes.len();
        for cut in 0..len {
            prop_assert_eq!(scan(&bytes[..cut]).unwrap(), None);
        }
        bytes.extend_from_slice(&tail);
        let f = scan(&bytes).unwrap().unwrap();
        prop_assert_eq!(f.len, len);
        prop_assert_eq!(f.kind, top_kind(&v));
    }

    #[test]
    fn commands_round_trip(argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..30), 1..8)) {
        let enc = encode_command(&argv);
        prop_assert_eq!(parse_command(&enc).unwrap(), Some((argv, enc.len())));
    }

    #[test]
    fn no_input_panics(v in value(), noise in prop::collection::vec(any::<u8>(), 0..64),
                       edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
        let mut bytes = Vec::new();
        encode(&v, &mut bytes);
        for (at, b) in &edits {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = *b;
            }
        }
        for input in [&bytes[..], &noise[..]] {
            if let Ok(Some(f)) = scan(input) {
                prop_assert!(f.len <= input.len());
            }
            if let Ok(Some((_, n))) = parse_command(input) {
                prop_assert!(n <= input.len());
            }
            let mut spans = Vec::new();
            if let Ok(Some(n)) = parse_command_spans(input, &mut spans) {
                prop_assert!(n <= input.len());
                prop_assert!(spans.iter().all(|r| r.end <= n));
            }
        }
    }

    #[test]
    fn spans_frame_commands_and_inline_lines(
        argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..30), 1..8),
        inline in prop::collection::vec(prop::sample::select(&b"ab \t\r\nx"[..]), 0..24),
    ) {
        let enc = encode_command(&argv);
        let mut spans = Vec::new();
        for cut in 0..enc.len() {
            prop_assert_eq!(parse_command_spans(&enc[..cut], &mut spans).unwrap(), None);
        }
        prop_assert_eq!(parse_command_spans(&enc, &mut spans).unwrap(), Some(enc.len()));
        let args: Vec<Vec<u8>> = spans.iter().map(|r| enc[r.clone()].to_vec()).collect();
        prop_assert_eq!(args, argv);
        // An inline command: the words of the line up to its CRLF.
        let end = inline.windows(2).position(|w| w == b"\r\n");
        let got = parse_command_spans(&inline, &mut spans).unwrap();
        prop_assert_eq!(got, end.map(|e| e + 2));
        if let Some(e) = end {
            let words: Vec<&[u8]> = inline[..e]
                .split(|b| *b == b' ' || *b == b'\t')
                .filter(|w| !w.is_empty())
                .collect();
            let found: Vec<&[u8]> = spans.iter().map(|r| &inline[r.clone()]).collect();
            prop_assert_eq!(found, words);
        }
    }
}
