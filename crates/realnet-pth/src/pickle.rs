//! A small pickle virtual machine: enough of the protocol (0–5) to read what `torch.save` writes,
//! without executing anything. Globals and calls are kept as data ([`Value::Global`],
//! [`Value::Call`]); the caller interprets the few it knows (`_rebuild_tensor_v2`, `OrderedDict`).

use std::collections::HashMap;
use std::rc::Rc;

/// A decoded pickle object. Containers are plain values: a dict stored in the memo and filled
/// afterwards is seen filled only on the stack, which is all `torch.save` outputs rely on.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An integer wider than 64 bits, little-endian two's complement (torch's legacy magic number).
    BigInt(Vec<u8>),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// `module.name`, not resolved.
    Global(Rc<str>, Rc<str>),
    /// `func(*args)` (REDUCE / NEWOBJ), with the state given by BUILD, if any.
    Call {
        func: Box<Value>,
        args: Vec<Value>,
        state: Option<Box<Value>>,
    },
    /// A persistent id (torch's storages); the caller maps it to data.
    PersId(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    /// Items of a tuple or list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }
    /// `Some((module, name))` for a global.
    pub fn as_global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global(m, n) => Some((m, n)),
            _ => None,
        }
    }
}

/// Where the VM stopped and why.
#[derive(Debug, thiserror::Error)]
#[error("pickle byte {pos}: {msg}")]
pub struct PickleError {
    pub pos: usize,
    pub msg: String,
}

/// Decodes one pickle from the start of `data`. Returns the object and the number of bytes read
/// (legacy torch files hold several pickles back to back).
pub fn parse(data: &[u8]) -> Result<(Value, usize), PickleError> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let v = vm.run()?;
    Ok((v, vm.pos))
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl<'a> Vm<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            pos: self.pos,
            msg: msg.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        if self
            .pos
            .checked_add(n)
            .is_none_or(|end| end > self.data.len())
        {
            return self.err(format!(
                "needs {n} more bytes but the data ends (truncated file?)"
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&c| c == b'\n') else {
            return self.err("text argument without end of line");
        };
        let s =
            std::str::from_utf8(&rest[..n]).or_else(|_| self.err("text argument is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn utf8(&self, b: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(b.to_vec()).or_else(|_| self.err("string is not UTF-8"))
    }
    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.err("stack underflow"),
        }
    }
    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let pos = self.pos;
        self.stack.last_mut().ok_or(PickleError {
            pos,
            msg: "stack underflow".into(),
        })
    }
    /// Pops everything down to the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(m) = self.marks.pop() else {
            return self.err("no MARK on the stack");
        };
        if m > self.stack.len() {
            return self.err("MARK above the stack top");
        }
        Ok(self.stack.split_off(m))
    }
    fn memo_get(&mut self, k: u64) -> Result<(), PickleError> {
        match self.memo.get(&k) {
            Some(v) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
            None => self.err(format!("memo key {k} not set")),
        }
    }
    fn memo_put(&mut self, k: u64) -> Result<(), PickleError> {
        let v = self.top()?.clone();
        self.memo.insert(k, v);
        Ok(())
    }
    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return self.err("SETITEMS with an odd number of items");
        }
        let pos = self.pos;
        let target = self.top()?;
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match target {
                Value::Dict(d) => d.push((k, v)),
                // OrderedDict() and friends: keep the items as the call's state.
                Value::Call { state, .. } => {
                    let s = state.get_or_insert_with(|| Box::new(Value::Dict(Vec::new())));
                    match s.as_mut() {
                        Value::Dict(d) => d.push((k, v)),
                        _ => {
                            return Err(PickleError {
                                pos,
                                msg: "SETITEM on an object with state".into(),
                            })
                        }
                    }
                }
                _ => {
                    return Err(PickleError {
                        pos,
                        msg: "SETITEM on a non-dict".into(),
                    })
                }
            }
        }
        Ok(())
    }
    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let pos = self.pos;
        match self.top()? {
            Value::List(l) => {
                l.extend(items);
                Ok(())
            }
            _ => Err(PickleError {
                pos,
                msg: "APPEND on a non-list".into(),
            }),
        }
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.u64()?; // FRAME: a size hint only
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let v = self.pop_mark()?;
                    self.stack.push(Value::Tuple(v));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return self.err("stack underflow in TUPLEn");
                    }
                    let v = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(v));
                }
                b'l' => {
                    let v = self.pop_mark()?;
                    self.stack.push(Value::List(v));
                }
                b'd' => {
                    let v = self.pop_mark()?;
                    self.stack.push(Value::Dict(Vec::new()));
                    self.set_items(v)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let v = self.pop_mark()?;
                    self.append(v)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let v = self.pop_mark()?;
                    self.set_items(v)?;
                }
                0x8f => self.stack.push(Value::List(Vec::new())), // EMPTY_SET (as a list)
                0x90 => {
                    let v = self.pop_mark()?; // ADDITEMS
                    self.append(v)?;
                }
                0x91 => {
                    let v = self.pop_mark()?; // FROZENSET
                    self.stack.push(Value::List(v));
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.stack.push(Value::Int(v));
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.stack.push(Value::Int(v));
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement.
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    let b = self.take(n)?;
                    if n > 8 {
                        self.stack.push(Value::BigInt(b.to_vec()));
                        continue;
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'I' | b'L' => {
                    let s = self.line()?.trim_end_matches('L');
                    let v = match s {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => match s.parse::<i64>() {
                            Ok(i) => Value::Int(i),
                            Err(_) => return self.err(format!("bad integer '{s}'")),
                        },
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'F' => {
                    let s = self.line()?;
                    match s.parse::<f64>() {
                        Ok(f) => self.stack.push(Value::Float(f)),
                        Err(_) => return self.err(format!("bad float '{s}'")),
                    }
                }
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'N' => self.stack.push(Value::None),
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32()? as usize,
                        0x8c => self.u8()? as usize,
                        _ => self.u64()? as usize,
                    };
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.stack.push(Value::Str(s));
                }
                b'T' | b'U' => {
                    // Python 2 byte strings: torch's legacy files use them for keys.
                    let n = if op == b'T' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    let b = self.take(n)?;
                    let v = match std::str::from_utf8(b) {
                        Ok(s) => Value::Str(s.to_string()),
                        Err(_) => Value::Bytes(b.to_vec()),
                    };
                    self.stack.push(v);
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.u64()? as usize,
                    };
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'V' | b'S' => {
                    let s = self.line()?.trim_matches('\'').to_string();
                    self.stack.push(Value::Str(s));
                }
                b'c' => {
                    let m = self.line()?;
                    let n = self.line()?;
                    self.stack.push(Value::Global(m.into(), n.into()));
                }
                0x93 => {
                    let n = self.pop()?;
                    let m = self.pop()?;
                    match (m, n) {
                        (Value::Str(m), Value::Str(n)) => self
                            .stack
                            .push(Value::Global(m.as_str().into(), n.as_str().into())),
                        _ => return self.err("STACK_GLOBAL needs two strings"),
                    }
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let s = self.line()?;
                    let Ok(k) = s.parse::<u64>() else {
                        return self.err("bad PUT index");
                    };
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    self.memo_get(k)?;
                }
                b'g' => {
                    let s = self.line()?;
                    let Ok(k) = s.parse::<u64>() else {
                        return self.err("bad GET index");
                    };
                    self.memo_get(k)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(Value::PersId(Box::new(pid)));
                }
                b'P' => {
                    let s = self.line()?.to_string();
                    self.stack.push(Value::PersId(Box::new(Value::Str(s))));
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return self.err("REDUCE arguments are not a tuple");
                    };
                    self.stack.push(Value::Call {
                        func: Box::new(func),
                        args,
                        state: None,
                    });
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return self.err("NEWOBJ_EX arguments are not a tuple");
                    };
                    self.stack.push(Value::Call {
                        func: Box::new(func),
                        args,
                        state: None,
                    });
                }
                b'b' => {
                    let st = self.pop()?;
                    let pos = self.pos;
                    match self.top()? {
                        Value::Call { state, .. } => match state {
                            // OrderedDict filled by SETITEMS, then BUILD with attributes: keep the items.
                            Some(_) => {}
                            None => *state = Some(Box::new(st)),
                        },
                        // BUILD on a plain dict (e.g. a state dict's `_metadata`): ignore.
                        Value::Dict(_) => {}
                        _ => {
                            return Err(PickleError {
                                pos,
                                msg: "BUILD on an unexpected object".into(),
                            })
                        }
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                _ => return self.err(format!("unsupported pickle opcode 0x{op:02x}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_protocol2_dict_with_ints_and_strings() {
        // pickle.dumps({'a': 1, 'bb': (-2, 300, 70000), 'c': None}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x02\x00\x00\x00bbq\x02J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00\x87q\x03X\x01\x00\x00\x00cq\x04Nu.";
        let (v, n) = parse(data).unwrap();
        assert_eq!(n, data.len());
        let Value::Dict(items) = v else {
            panic!("not a dict")
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], (Value::Str("a".into()), Value::Int(1)));
        assert_eq!(
            items[1].1,
            Value::Tuple(vec![Value::Int(-2), Value::Int(300), Value::Int(70000)])
        );
        assert_eq!(items[2].1, Value::None);
    }

    #[test]
    fn long1_is_twos_complement() {
        // LONG1 with 0x0a bytes magic number of torch legacy files, and a negative one.
        let data = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
        let big = parse(data).unwrap().0;
        assert_eq!(
            big,
            Value::BigInt(b"l\xfc\x9cF\xf9 j\xa8P\x19".to_vec()),
            "not wrapped to 64 bits"
        );
        let neg = b"\x8a\x01\xff.";
        assert_eq!(parse(neg).unwrap().0, Value::Int(-1));
        let big = b"\x8a\x03\x00\x00\x01.";
        assert_eq!(parse(big).unwrap().0, Value::Int(65536));
    }

    #[test]
    fn truncated_data_is_an_error_not_a_panic() {
        let data = b"\x80\x02}q\x00(X\x05\x00\x00\x00ab";
        let e = parse(data).unwrap_err();
        assert!(e.msg.contains("truncated"), "{e}");
    }

    #[test]
    fn memo_get_and_reduce() {
        // collections.OrderedDict() then SETITEMS, as torch writes state dicts.
        let data = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00kq\x02h\x02s.";
        let (v, _) = parse(data).unwrap();
        let Value::Call { func, args, state } = v else {
            panic!()
        };
        assert_eq!(func.as_global(), Some(("collections", "OrderedDict")));
        assert!(args.is_empty());
        assert_eq!(
            state.as_deref(),
            Some(&Value::Dict(vec![(
                Value::Str("k".into()),
                Value::Str("k".into())
            )]))
        );
    }
}
