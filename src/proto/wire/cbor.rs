//! cbor serializer (stub: being implemented).

use std::ops::Range;

use super::message::{self, DecodeError, ValueKind};
use super::value::{Dict, Value};

pub struct Reader<'a> {
    _buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { _buf: buf }
    }
}

impl message::Reader for Reader<'_> {
    fn begin(&mut self) -> Result<(), DecodeError> {
        Err(DecodeError::new("cbor: not implemented"))
    }
    fn more(&mut self) -> Result<bool, DecodeError> {
        Err(DecodeError::new("cbor: not implemented"))
    }
    fn uint(&mut self) -> Result<u64, DecodeError> {
        Err(DecodeError::new("cbor: not implemented"))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        Err(DecodeError::new("cbor: not implemented"))
    }
    fn dict(&mut self) -> Result<Dict, DecodeError> {
        Err(DecodeError::new("cbor: not implemented"))
    }
    fn value(&mut self) -> Result<Value, DecodeError> {
        Err(DecodeError::new("cbor: not implemented"))
    }
    fn skip(&mut self) -> Result<(Range<usize>, ValueKind), DecodeError> {
        Err(DecodeError::new("cbor: not implemented"))
    }
    fn end(&mut self) -> Result<(), DecodeError> {
        Err(DecodeError::new("cbor: not implemented"))
    }
}

pub struct Writer<'a> {
    _out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { _out: out }
    }
}

impl message::Writer for Writer<'_> {
    fn begin(&mut self, _len: usize) {}
    fn uint(&mut self, _v: u64) {}
    fn string(&mut self, _s: &str) {}
    fn dict(&mut self, _d: &Dict) {}
    fn raw(&mut self, _raw: &[u8]) {}
    fn end(&mut self) {}
}

/// Decode a sequence of concatenated values (a payload's raw elements).
pub fn decode_values(_raw: &[u8]) -> Result<Vec<Value>, DecodeError> {
    Err(DecodeError::new("cbor: not implemented"))
}

/// Encode one value.
pub fn encode_value(_v: &Value, _out: &mut Vec<u8>) {}
