//! A `VADD` that updates an existing vector-set element is not replicated by Redis 8.2 (the
//! vector-set module replicates `VADD` only when it added the element), so a log made of the
//! replication stream would miss it, and so would every replica of that Redis. The proxy
//! therefore sends a client's `VADD` as a script that runs the `VADD` itself and, when it
//! was an update, re-applies the element's new state with commands that *are* replicated:
//! `VREM` then `VADD` of the element with its new vector and its attribute as it now is,
//! and the key's expiry again if removing the last element deleted the key. Redis runs the
//! script atomically, so the replicated effect lands exactly where the update happened.
//!
//! The client sees `VADD`'s own answer: the script returns what `VADD` returned (an error
//! unchanged), and the reply side turns the integer back into a boolean for RESP3 clients.
//! `VADD`s inside the client's own scripts cannot be repaired this way (documented).

use crate::protocol::resp::encode_command;

/// KEYS[1]: the vector set. ARGV[1]: the position of the element among the arguments
/// after it; ARGV[2..]: `VADD`'s arguments after the key, as the client sent them.
pub const SCRIPT: &str = r#"local args = {}
for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
local elem = args[tonumber(ARGV[1])]
local r = redis.pcall('VADD', KEYS[1], unpack(args))
if type(r) == 'table' and r.err then return r end
if r == 0 then
  -- An update, which Redis does not replicate: replicate its effect instead.
  local attr = redis.call('VGETATTR', KEYS[1], elem)
  local at = -1
  if redis.call('VCARD', KEYS[1]) == 1 then at = redis.call('PEXPIRETIME', KEYS[1]) end
  local again = {}
  local i = 1
  while i <= #args do
    local a = string.upper(args[i])
    if a == 'SETATTR' and i > tonumber(ARGV[1]) then i = i + 2
    elseif a == 'CAS' and i > tonumber(ARGV[1]) then i = i + 1
    else again[#again + 1] = args[i]; i = i + 1 end
  end
  if attr then again[#again + 1] = 'SETATTR'; again[#again + 1] = attr end
  redis.call('VREM', KEYS[1], elem)
  redis.call('VADD', KEYS[1], unpack(again))
  if at > 0 then redis.call('PEXPIREAT', KEYS[1], at) end
end
return r
"#;

/// Most arguments the script passes on through `unpack` (Lua's stack allows some 8,000);
/// a longer `VADD` (a `VALUES` vector of thousands of numbers) goes as it is, with a warning.
const MAX_ARGS: usize = 7000;

/// The bytes to send upstream for the client's `VADD` `argv`.
pub fn wrap(argv: &[Vec<u8>]) -> Vec<u8> {
    match element_index(argv) {
        Some(e) if argv.len() <= MAX_ARGS => {
            let mut call = Vec::with_capacity(argv.len() + 4);
            call.push(b"EVAL".to_vec());
            call.push(SCRIPT.as_bytes().to_vec());
            call.push(b"1".to_vec());
            call.push(argv[1].clone());
            call.push(e.to_string().into_bytes());
            call.extend(argv[2..].iter().cloned());
            encode_command(&call)
        }
        Some(_) => {
            tracing::warn!(
                args = argv.len(),
                "a VADD too long to send as a script goes as it is: if it updates an element, \
                 Redis does not replicate it and the log misses it"
            );
            encode_command(argv)
        }
        // Malformed: Redis answers it with its own error and changes nothing.
        None => encode_command(argv),
    }
}

/// Where the element is among the arguments after the key (1-based, as Lua counts):
/// `VADD key [REDUCE dim] (FP32 blob | VALUES n v1 … vn) element [options]`.
pub fn element_index(argv: &[Vec<u8>]) -> Option<usize> {
    let args = argv.get(2..)?;
    let mut i = 0;
    if args.get(i)?.eq_ignore_ascii_case(b"REDUCE") {
        i += 2;
    }
    let how = args.get(i)?;
    if how.eq_ignore_ascii_case(b"FP32") {
        i += 2;
    } else if how.eq_ignore_ascii_case(b"VALUES") {
        let n: usize = std::str::from_utf8(args.get(i + 1)?).ok()?.parse().ok()?;
        i = i.checked_add(2)?.checked_add(n)?;
    } else {
        return None;
    }
    args.get(i)?;
    Some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(w: &[&str]) -> Vec<Vec<u8>> {
        w.iter().map(|x| x.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_element_is_found_after_every_vector_form() {
        assert_eq!(
            element_index(&a(&["VADD", "k", "VALUES", "2", "1", "0", "e"])),
            Some(5)
        );
        assert_eq!(
            element_index(&a(&["VADD", "k", "FP32", "xxxxxxxx", "e", "SETATTR", "{}"])),
            Some(3)
        );
        assert_eq!(
            element_index(&a(&[
                "vadd", "k", "reduce", "2", "values", "3", "1", "2", "3", "e"
            ])),
            Some(8)
        );
        assert_eq!(
            element_index(&a(&["VADD", "k", "VALUES", "3", "1", "2"])),
            None
        );
        assert_eq!(element_index(&a(&["VADD", "k", "VALUES", "x"])), None);
        assert_eq!(element_index(&a(&["VADD", "k"])), None);
        assert_eq!(
            element_index(&a(&["VADD", "k", "VALUES", "18446744073709551615", "e"])),
            None
        );
    }

    #[test]
    fn a_vadd_goes_as_the_script_and_a_malformed_one_as_it_is() {
        let v = a(&["VADD", "k", "VALUES", "2", "1", "0", "e"]);
        let wrapped = wrap(&v);
        let (argv, _) = crate::protocol::resp::parse_command(&wrapped)
            .unwrap()
            .unwrap();
        assert_eq!(argv[0], b"EVAL");
        assert_eq!(
            argv[2..],
            a(&["1", "k", "5", "VALUES", "2", "1", "0", "e"])[..]
        );
        let bad = a(&["VADD", "k", "nonsense"]);
        assert_eq!(wrap(&bad), encode_command(&bad));
    }
}
