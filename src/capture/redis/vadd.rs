//! A `VADD` that updates an existing vector-set element is not replicated by Redis 8.2 (the
//! vector-set module replicates `VADD` only when it added the element), so a log made of the
//! replication stream would miss it, and so would every replica of that Redis. The proxy
//! therefore sends a client's `VADD` as a script that runs the `VADD` itself and, when it
//! was an update, re-applies the element's new state with commands that *are* replicated:
//! `VREM` then `VADD` of the element with its new vector and its attribute as it now is,
//! and the key's expiry again if removing the last element deleted the key. Redis runs the
//! script atomically, so the replicated effect lands exactly where the update happened.
//!
//! The client sees `VADD`'s own answer, byte for byte in RESP2 and RESP3, errors included:
//! the script runs `VADD` in RESP3 mode and returns its boolean (or its error) as it is.
//! Its limits (documented in docs/redis.md): the client's Redis user needs `EVAL` and the
//! commands the script uses; `VADD`s inside the client's own scripts cannot be repaired;
//! a `VALUES` vector of more than some 7,990 numbers is refused (send it as `FP32`).

use crate::protocol::resp::encode_command;

/// KEYS[1]: the vector set; ARGV: `VADD`'s arguments after the key, as the client sent them.
pub const SCRIPT: &str = r#"redis.setresp(3)
local key = KEYS[1]
local n = #ARGV
-- unpack() takes at most some 8,000 values and the re-add may need two more: refuse
-- before anything changes rather than fail half-way.
if n > 7997 then
  return redis.error_reply('ERR vecwal: VADD has too many arguments to be logged; send the vector as FP32')
end
-- The update path needs these: check before VADD changes anything, or an update could be
-- applied and not replicated.
if not (redis.acl_check_cmd('VGETATTR', key, 'e') and redis.acl_check_cmd('PEXPIRETIME', key)
        and redis.acl_check_cmd('VREM', key, 'e') and redis.acl_check_cmd('PEXPIREAT', key, '0')) then
  return redis.error_reply('NOPERM vecwal: VADD also needs VGETATTR, PEXPIRETIME, VREM, PEXPIREAT on this key')
end
local r = redis.pcall('VADD', key, unpack(ARGV))
if type(r) == 'table' then return r end
if r == false then
  -- An update, which Redis does not replicate: redo it as VREM + VADD, both replicated.
  local i = 1
  if n >= i + 2 and string.upper(ARGV[i]) == 'REDUCE' then i = i + 2 end
  local ei
  if string.upper(ARGV[i]) == 'FP32' then ei = i + 2 else ei = i + 2 + tonumber(ARGV[i + 1]) end
  local ele = ARGV[ei]
  local args = {}
  for k = 1, ei do args[#args + 1] = ARGV[k] end
  local j = ei + 1
  while j <= n do
    local o = string.upper(ARGV[j])
    if o == 'SETATTR' then
      j = j + 2
    elseif o == 'EF' or o == 'M' then
      args[#args + 1] = ARGV[j]; args[#args + 1] = ARGV[j + 1]; j = j + 2
    else
      args[#args + 1] = ARGV[j]; j = j + 1
    end
  end
  local attr = redis.call('VGETATTR', key, ele)
  local exp = redis.call('PEXPIRETIME', key)
  redis.call('VREM', key, ele)
  if attr then args[#args + 1] = 'SETATTR'; args[#args + 1] = attr end
  redis.call('VADD', key, unpack(args))
  if exp >= 0 and redis.call('PEXPIRETIME', key) ~= exp then
    redis.call('PEXPIREAT', key, exp)
  end
end
return r
"#;

/// The bytes to send upstream for the client's `VADD` `argv`.
pub fn wrap(argv: &[Vec<u8>]) -> Vec<u8> {
    let Some(key) = argv.get(1) else {
        // No key: Redis answers with its own arity error.
        return encode_command(argv);
    };
    let mut call = Vec::with_capacity(argv.len() + 3);
    call.push(b"EVAL".to_vec());
    call.push(SCRIPT.as_bytes().to_vec());
    call.push(b"1".to_vec());
    call.push(key.clone());
    call.extend(argv[2..].iter().cloned());
    encode_command(&call)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(w: &[&str]) -> Vec<Vec<u8>> {
        w.iter().map(|x| x.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_vadd_goes_as_the_script_with_its_arguments_unchanged() {
        let v = a(&["VADD", "k", "VALUES", "2", "1", "0", "e", "SETATTR", "{}"]);
        let wrapped = wrap(&v);
        let (argv, _) = crate::protocol::resp::parse_command(&wrapped)
            .unwrap()
            .unwrap();
        assert_eq!(argv[0], b"EVAL");
        assert_eq!(argv[1], SCRIPT.as_bytes());
        assert_eq!(
            argv[2..],
            a(&["1", "k", "VALUES", "2", "1", "0", "e", "SETATTR", "{}"])[..]
        );
        let bare = a(&["VADD"]);
        assert_eq!(wrap(&bare), encode_command(&bare));
    }
}
