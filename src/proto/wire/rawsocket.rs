//! RawSocket transport codec (stub).
