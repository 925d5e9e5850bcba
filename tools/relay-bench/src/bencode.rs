//! Just enough bencode for rtpengine's ng control protocol: dictionaries of strings, integers
//! and lists out; dictionaries back, read as strings.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Vec<u8>),
    Int(i64),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(s.as_bytes().to_vec())
    }

    pub fn dict(pairs: Vec<(&str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Str(s) => {
                out.extend_from_slice(s.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(s);
            }
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::List(items) => {
                out.push(b'l');
                for i in items {
                    i.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    Value::Str(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// A dictionary entry as text.
    pub fn get_str(&self, key: &str) -> Option<String> {
        match self {
            Value::Dict(m) => match m.get(key.as_bytes())? {
                Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
                Value::Int(i) => Some(i.to_string()),
                _ => None,
            },
            _ => None,
        }
    }
}

pub fn decode(data: &[u8]) -> Result<(Value, &[u8]), String> {
    let first = *data.first().ok_or("empty bencode")?;
    match first {
        b'i' => {
            let end = data
                .iter()
                .position(|&b| b == b'e')
                .ok_or("unterminated int")?;
            let n = std::str::from_utf8(&data[1..end])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("bad int")?;
            Ok((Value::Int(n), &data[end + 1..]))
        }
        b'l' => {
            let mut rest = &data[1..];
            let mut items = Vec::new();
            while rest.first() != Some(&b'e') {
                let (v, r) = decode(rest)?;
                items.push(v);
                rest = r;
            }
            Ok((Value::List(items), &rest[1..]))
        }
        b'd' => {
            let mut rest = &data[1..];
            let mut map = BTreeMap::new();
            while rest.first() != Some(&b'e') {
                let (k, r) = decode(rest)?;
                let (v, r) = decode(r)?;
                let Value::Str(k) = k else {
                    return Err("non-string key".into());
                };
                map.insert(k, v);
                rest = r;
            }
            Ok((Value::Dict(map), &rest[1..]))
        }
        b'0'..=b'9' => {
            let colon = data.iter().position(|&b| b == b':').ok_or("bad string")?;
            let len: usize = std::str::from_utf8(&data[..colon])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("bad length")?;
            let body = data
                .get(colon + 1..colon + 1 + len)
                .ok_or("string beyond data")?;
            Ok((Value::Str(body.to_vec()), &data[colon + 1 + len..]))
        }
        _ => Err(format!("unexpected byte {first}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = Value::dict(vec![
            ("command", Value::str("offer")),
            ("flags", Value::List(vec![Value::str("a"), Value::str("b")])),
            ("n", Value::Int(-3)),
        ]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out, b"d7:command5:offer5:flagsl1:a1:be1:ni-3ee".to_vec());
        let (back, rest) = decode(&out).unwrap();
        assert!(rest.is_empty());
        assert_eq!(back, v);
        assert_eq!(back.get_str("command").as_deref(), Some("offer"));
    }
}
