#![no_main]
//! What a Redis client sends the proxy, and what Redis answers: a command parsed from
//! arbitrary bytes re-encodes to a command that parses to the same arguments; `scan` and
//! the value decoder agree on where a value ends.
use libfuzzer_sys::fuzz_target;
use vecwal::protocol::{resp, resp_value};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((argv, n))) = resp::parse_command(data) {
        assert!(n <= data.len());
        if data.first() == Some(&b'*') {
            let again = resp::encode_command(&argv);
            let (argv2, m) = resp::parse_command(&again).unwrap().unwrap();
            assert_eq!((argv2, m), (argv, again.len()));
        }
    }
    let framed = resp::scan(data);
    let decoded = resp_value::decode(data);
    if let (Ok(Some(f)), Ok(Some((_, n)))) = (&framed, &decoded) {
        assert_eq!(f.len, *n, "scan and decode end the value at the same byte");
    }
});
