//! Writing CBOR: the message [`Writer`] and [`encode_value`], with definite lengths and every
//! header in its smallest form, the way autobahn-python's `cbor2.dumps` writes it.
//!
//! Must not: fail (every `Value` has a CBOR form), or read anything.

use std::convert::Infallible;

use minicbor::Encoder;

use crate::proto::wire::codec;
use crate::proto::wire::value::{Dict, Value};

/// minicbor's encoder over a `Vec` cannot fail (its writer's error type is `Infallible`);
/// the result carries nothing.
fn wrote<T>(r: Result<T, minicbor::encode::Error<Infallible>>) {
    debug_assert!(r.is_ok(), "writing CBOR into a Vec failed");
}

fn write_dict(out: &mut Vec<u8>, d: &Dict) {
    wrote(Encoder::new(&mut *out).map(d.len() as u64));
    for (k, v) in d.iter() {
        wrote(Encoder::new(&mut *out).str(k));
        encode_value(v, out);
    }
}

/// Writes one WAMP message as a definite-length CBOR array.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    fn enc(&mut self) -> Encoder<&mut Vec<u8>> {
        Encoder::new(&mut *self.out)
    }
}

impl codec::Writer for Writer<'_> {
    fn begin(&mut self, len: usize) {
        wrote(self.enc().array(len as u64));
    }

    fn uint(&mut self, v: u64) {
        wrote(self.enc().u64(v));
    }

    fn string(&mut self, s: &str) {
        wrote(self.enc().str(s));
    }

    fn dict(&mut self, d: &Dict) {
        write_dict(self.out, d);
    }

    fn raw(&mut self, raw: &[u8]) {
        self.out.extend_from_slice(raw);
    }

    fn end(&mut self) {}
}

/// Encode one value with definite lengths, each header in its smallest form.
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    let mut e = Encoder::new(&mut *out);
    match v {
        Value::Null => wrote(e.null()),
        Value::Bool(b) => wrote(e.bool(*b)),
        Value::UInt(n) => wrote(e.u64(*n)),
        Value::Int(n) => wrote(e.i64(*n)),
        // cbor2 writes the non-finite floats as half floats and every other float as float64.
        Value::Float(f) if f.is_nan() => out.extend_from_slice(&[0xf9, 0x7e, 0x00]),
        Value::Float(f) if f.is_infinite() => {
            out.extend_from_slice(if *f > 0.0 { &[0xf9, 0x7c, 0x00] } else { &[0xf9, 0xfc, 0x00] })
        }
        Value::Float(f) => wrote(e.f64(*f)),
        Value::Str(s) => wrote(e.str(s)),
        Value::Bytes(b) => wrote(e.bytes(b)),
        Value::List(items) => {
            wrote(e.array(items.len() as u64));
            for item in items {
                encode_value(item, out);
            }
        }
        Value::Dict(d) => write_dict(out, d),
    }
}
